"""keras_bigtransfer: paper-faithful BiT, EfficientNet and ViT as native Keras 3 models.

Every model takes float32 RGB images in [0, 1] (uint8 is converted), NHWC.
"""

__version__ = "0.1.0"

from keras_bigtransfer import hub, layers  # noqa: F401
from keras_bigtransfer.errors import WeightsError
from keras_bigtransfer.models.base import ImageModel
from keras_bigtransfer.models.efficientnet import (  # noqa: F401
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
)
from keras_bigtransfer.models.vit import (  # noqa: F401
    ViT_B8,
    ViT_B16,
    ViT_B32,
    ViT_H14,
    ViT_L16,
    ViT_L32,
    ViT_R50_B16,
    ViT_S16,
    ViT_S32,
    ViT_Ti16,
)
from keras_bigtransfer.training import (  # noqa: F401
    HyperRule,
    fit_bit,
    fit_meta_pseudo_labels,
    fit_noisy_student,
    freeze_batch_norm,
    hyperrule,
)
from keras_bigtransfer.models.bit import (  # noqa: F401
    BiT_L_R152x4,
    BiT_M_R50x1,
    BiT_M_R50x3,
    BiT_M_R101x1,
    BiT_M_R101x3,
    BiT_M_R152x2,
    BiT_M_R152x4,
    BiT_S_R50x1,
    BiT_S_R50x3,
    BiT_S_R101x1,
    BiT_S_R101x3,
    BiT_S_R152x2,
    BiT_S_R152x4,
)
