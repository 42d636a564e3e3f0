"""EfficientNet's feature stages: the last block before each drop in resolution, and the last
block (the TF reference's `reduction_1` ... `reduction_5`, timm `efficientnet`'s `feature_info`)."""

from keras_bigtransfer.models.efficientnet.model import stage_plan
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.features import Stage, endpoint


def stages(config):
    """Every map of an `EfficientNetConfig`'s model, in order (strides 2, 4, 8, 16, 32)."""
    plan = stage_plan(config.width, config.depth, config.lite)
    stem_filters = 32 if config.lite else None
    found, reduction = [], 2  # the stem's stride
    for i, (_, repeats, f_in, f_out, _, stride) in enumerate(plan):
        reduction *= stride
        if i + 1 < len(plan) and plan[i + 1][5] == 1:
            continue
        if i == 0 and stem_filters:
            f_in = stem_filters
        # A block's output is its residual add when it has one (same width, stride 1).
        last_in, last_stride = (f_out, 1) if repeats > 1 else (f_in, stride)
        suffix = "add" if last_in == f_out and last_stride == 1 else "project_bn"
        block = f"block{i + 1}{chr(97 + repeats - 1)}"
        found.append(Stage(f"{block}_{suffix}", f_out, reduction, f"P{len(found) + 1}", f"blocks.{i}"))
    return found


def maps(model, selected, is_last, *, feature_norm=False):
    if feature_norm:
        raise ValueError(f"{model.name}: feature_norm applies to BiT and ViT; EfficientNet's maps "
                         "have no final norm to apply (its head conv has its own BatchNorm).")
    return [endpoint(model, stage.layer) for stage in selected]


FEATURES = registry.Features(stages=stages, maps=maps, default_out_indices=(0, 1, 2, 3, 4),  # timm's
                             reductions=(2, 4, 8, 16, 32))
