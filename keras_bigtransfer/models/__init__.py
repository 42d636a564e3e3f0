"""Model families: one module each."""

from keras_bigtransfer.models.base import ImageModel
from keras_bigtransfer.models.bit import *  # noqa: F401,F403
from keras_bigtransfer.models import bit
from keras_bigtransfer.models.efficientnet import *  # noqa: F401,F403,E402
from keras_bigtransfer.models import efficientnet  # noqa: E402
from keras_bigtransfer.models.vit import *  # noqa: F401,F403,E402
from keras_bigtransfer.models import vit  # noqa: E402
