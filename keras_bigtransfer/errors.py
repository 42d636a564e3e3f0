"""Exceptions raised by keras_bigtransfer."""


class WeightsError(ValueError):
    """A checkpoint (or module archive) cannot be read, or does not fit the model.

    A file that cannot be read (corrupt, truncated, unsafe, over a limit) gives one
    line naming the file, the key when one is at fault, and what is wrong; the
    library's own exception is chained as `__cause__`. A file that does not fit
    lists every missing, unused, mis-shaped and mis-typed key at once, so a single
    run tells the whole story (for example R50x3 weights meeting an R50x1 model).
    """


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the checksum it must have."""


class OfflineError(FileNotFoundError):
    """A file is not in the cache and `KERAS_BIGTRANSFER_OFFLINE` forbids fetching it."""


class DownloadError(OSError):
    """A download failed after every retry."""


class CacheError(OSError):
    """A cache entry is not what the cache writes: a symbolic link, or not a regular file or
    directory, where the cache would write. Nothing is written through it."""


class TrainingDivergedError(FloatingPointError):
    """A training run's loss became non-finite (NaN or infinity): its weights are unusable.

    Raised by `fit_bit`, `noisy_student` and `meta_pseudo_labels` at the first such step,
    so nothing is returned, published or backed up from the diverged state (a
    `checkpoint_dir` keeps its last whole-epoch backup). `step` is the optimizer step at
    which the loss was seen, `learning_rate` the rate the step ran at.
    """

    def __init__(self, message, step=None, learning_rate=None):
        super().__init__(message)
        self.step = step
        self.learning_rate = learning_rate
