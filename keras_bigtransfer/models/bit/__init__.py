"""The bit family."""

from keras_bigtransfer.models.bit.model import *  # noqa: F401,F403
from keras_bigtransfer.models.bit.model import __all__  # noqa: F401
