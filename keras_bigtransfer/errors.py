"""Exceptions raised by keras_bigtransfer."""


class WeightsError(ValueError):
    """A checkpoint does not fit the model it is loaded into.

    Raised with every missing, unused and mis-shaped key listed at once, so a
    single run tells the whole story (for example R50x3 weights meeting an
    R50x1 model).
    """
