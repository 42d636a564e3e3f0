"""BiT's feature stages (timm `resnetv2`'s `feature_info`): the root conv, then each block's output.

The root conv's map (stride 2) is taken before the max-pool, as timm's `stem.conv`; each
block's map is the output of its last unit (pre-activation: not normalized), as timm's
`stages.i`. `feature_norm=True` gives the last block's map through the final GroupNorm+ReLU
(timm's `forward_intermediates(norm=True)`).
"""

from keras_bigtransfer.models.bit.config import DEPTHS
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.features import Stage, endpoint


def stages(config):
    """Every map of a `BiTConfig`'s ResNetV2, in order."""
    width = config.width
    found = [Stage("root_block_standardized_conv2d", 64 * width, 2, "P1", "stem.conv")]
    for block, units in enumerate(DEPTHS[config.depth], start=1):
        found.append(Stage(f"block{block}_unit{units:02d}_add", 256 * width * 2 ** (block - 1),
                           2 ** (block + 1), f"P{block + 1}", f"stages.{block - 1}"))
    return found


def maps(model, selected, is_last, *, feature_norm=False):
    return [endpoint(model, "pre_head_relu" if feature_norm and last else stage.layer)
            for stage, last in zip(selected, is_last)]


FEATURES = registry.Features(stages=stages, maps=maps, default_out_indices=(0, 1, 2, 3, 4),  # timm's
                             reductions=(2, 4, 8, 16, 32))
