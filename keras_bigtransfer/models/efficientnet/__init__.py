"""The efficientnet family."""

from keras_bigtransfer.models.efficientnet.model import *  # noqa: F401,F403
from keras_bigtransfer.models.efficientnet.model import __all__  # noqa: F401
