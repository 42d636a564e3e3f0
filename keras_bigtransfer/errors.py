"""Exceptions raised by keras_bigtransfer."""


class WeightsError(ValueError):
    """A checkpoint does not fit the model it is loaded into.

    Raised with every missing, unused and mis-shaped key listed at once, so a
    single run tells the whole story (for example R50x3 weights meeting an
    R50x1 model).
    """


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the checksum it must have."""


class OfflineError(FileNotFoundError):
    """A file is not in the cache and `KERAS_BIGTRANSFER_OFFLINE` forbids fetching it."""


class DownloadError(OSError):
    """A download failed after every retry."""
