"""EfficientNet's feature stages: the last block before each drop in resolution, and the last
block (the TF reference's `reduction_1` ... `reduction_5`, timm `efficientnet`'s `feature_info`)."""

from keras_bigtransfer.models import registry
from keras_bigtransfer.models.efficientnet.model import block_output, scale
from keras_bigtransfer.models.features import Stage, endpoint


def stages(config):
    """Every map of an `EfficientNetConfig`'s model, in order (strides 2, 4, 8, 16, 32)."""
    plan = scale(config.architecture, config.width, config.depth).stages
    found, reduction = [], 2  # the stem's stride
    for i, stage in enumerate(plan):
        reduction *= stage.stride
        if i + 1 < len(plan) and plan[i + 1].stride == 1:
            continue
        block = f"block{i + 1}{chr(97 + stage.repeats - 1)}"
        found.append(Stage(f"{block}_{block_output(stage, stage.repeats - 1)}", stage.filters, reduction,
                           f"P{len(found) + 1}", f"blocks.{i}"))
    return found


def maps(model, selected, is_last, *, feature_norm=False):
    if feature_norm:
        raise ValueError(f"{model.name}: feature_norm applies to BiT and ViT; EfficientNet's maps "
                         "have no final norm to apply (its head conv has its own BatchNorm).")
    return [endpoint(model, stage.layer) for stage in selected]


FEATURES = registry.Features(stages=stages, maps=maps, default_out_indices=(0, 1, 2, 3, 4),  # timm's
                             reductions=(2, 4, 8, 16, 32))
