"""EfficientNet B0-B7, Lite0-4 and L2 (Noisy Student): the family's registration and its constructors.

`config.py` holds the variants (`EfficientNetConfig` rows), `model.py` the compound-scaling
builder, `convert.py` the published formats (Keras application .h5, EfficientNet-PyTorch
state dicts, the TF reference's checkpoints and TF Hub modules).
"""

from keras_bigtransfer.models import factory, registry
from keras_bigtransfer.models.efficientnet import convert, features, layouts
from keras_bigtransfer.models.efficientnet.config import (
    CONFIGS,
    TIMM_ARCHITECTURES,
    EfficientNetConfig,
    constructor_name,
)
from keras_bigtransfer.models.efficientnet.model import (
    EfficientNet,
    block_names,
    build,
    owns,
    round_filters,
    round_repeats,
    stage_plan,
)

FAMILY = registry.Family(
    name="efficientnet",
    build=build,
    convert=convert.load_arrays,
    head_classes=convert.head_classes,
    owns=owns,
    detect=layouts.detect,  # every published layout: TF, Model Garden, Keras .h5, PyTorch, timm
    from_checkpoint=layouts.from_checkpoint,
    identify=layouts.identify,
    features=features.FEATURES,
    timm_options=(("drop_rate", "dropout_rate"), ("drop_path_rate", "drop_connect_rate")),
    timm_architectures=TIMM_ARCHITECTURES,
)

# Parameters at 1000 classes, BatchNorm statistics included (timm's `tf_efficientnet_<variant>`;
# B0-B7 also keras.applications' less its 7 normalization statistics).
NUM_PARAMS = {
    "b0": 5_330_564, "b1": 7_856_232, "b2": 9_177_562, "b3": 12_320_528, "b4": 19_466_816,
    "b5": 30_562_520, "b6": 43_265_136, "b7": 66_658_680, "lite0": 4_694_024, "lite1": 5_470_344,
    "lite2": 6_150_168, "lite3": 8_273_768, "lite4": 13_118_936, "l2": 481_399_996,
    "v2b0": 7_200_312, "v2b1": 8_212_124, "v2b2": 10_178_374, "v2b3": 14_467_622,
    "v2s": 21_612_360, "v2m": 54_431_388, "v2l": 119_027_848, "v2xl": 208_896_832,
}

OPTIONS_DOC = """        drop_connect_rate: stochastic depth: block i of n drops its branch at rate * i / n
            (timm's `drop_path_rate`, which sets it).
        dropout_rate: dropout before the head (default {dropout}; timm's `drop_rate` sets it).
"""


def _variant(config):
    """The registry entry of one configuration row (its constructor's defaults and docstring)."""
    return registry.Variant(
        name=config.constructor_name,
        config=config,
        architecture=config.constructor_name,
        default_weights=config.default_weights,
        num_classes=1000,
        native_resolution=config.resolution,
        input_multiple=1,
        reference=config.reference,
        num_params=NUM_PARAMS.get(config.variant),
        default_name="efficientnet_" + config.variant,
        options=(("drop_connect_rate", 0.2), ("dropout_rate", config.dropout)),
        summary=(f"{config.constructor_name}: {config.architecture.name} width x{config.width}, depth "
                 f"x{config.depth}, native resolution {config.resolution}, ImageNet (1000 classes)."),
        options_doc=OPTIONS_DOC.format(dropout=config.dropout),
        # Every default is an ILSVRC-2012 classifier (L2: Noisy Student); no 21k release.
        named_weights=(("imagenet", config.default_weights),),
    )


# The public constructors, in the order of CONFIGS (the harness checks each name's variant).
(EfficientNetB0, EfficientNetB1, EfficientNetB2, EfficientNetB3, EfficientNetB4, EfficientNetB5,
 EfficientNetB6, EfficientNetB7, EfficientNetLite0, EfficientNetLite1, EfficientNetLite2,
 EfficientNetLite3, EfficientNetLite4, EfficientNetL2, EfficientNetV2B0, EfficientNetV2B1, EfficientNetV2B2,
 EfficientNetV2B3, EfficientNetV2S, EfficientNetV2M, EfficientNetV2L, EfficientNetV2XL) = factory.register(
    FAMILY, map(_variant, CONFIGS.values()))

__all__ = list(CONFIGS) + [
    "CONFIGS", "EfficientNet", "EfficientNetConfig", "block_names", "constructor_name",
    "round_filters", "round_repeats", "stage_plan",
]
