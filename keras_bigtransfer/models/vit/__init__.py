"""The vit family."""

from keras_bigtransfer.models.vit.model import *  # noqa: F401,F403
from keras_bigtransfer.models.vit.model import __all__  # noqa: F401
