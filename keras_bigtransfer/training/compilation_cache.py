"""JAX's persistent compilation cache for fit_bit: the second run of a fine-tune skips XLA's compile.

On JAX, `model.fit`'s first train step is traced and compiled by XLA: about a minute for
EfficientNet-Lite0 on 2 CPU cores, most of a short run (issue 27 item 3). JAX can keep compiled
programs on disk (https://docs.jax.dev/en/latest/persistent_compilation_cache.html); Keras'
`Model.compile` docstring recommends setting its directory. A library must not override a user's
choice, so fit_bit sets it only where the user set none.
"""

import logging
import os

import keras

from keras_bigtransfer.weights.download import cache_dir

log = logging.getLogger(__name__)

SUBDIR = "jax_compilation_cache"


def enable_jax_compilation_cache():
    """Point JAX's persistent compilation cache at `<cache_dir>/jax_compilation_cache` unless the
    user chose: a directory already set (`JAX_COMPILATION_CACHE_DIR`, or
    `jax.config.update("jax_compilation_cache_dir", ...)`) is kept, and a cache turned off
    (`jax_enable_compilation_cache=False`) stays off. `<cache_dir>` is `KERAS_BIGTRANSFER_HOME`,
    else ~/.cache/keras_bigtransfer. JAX's own thresholds apply (programs that took under
    `jax_persistent_cache_min_compile_time_secs`, 1 s, to compile are not stored).

    Returns:
        The directory in use (str), or None: another backend, or the cache turned off.
    """
    if keras.backend.backend() != "jax":
        return None
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None
    if jax.config.jax_compilation_cache_dir:  # the user's
        return jax.config.jax_compilation_cache_dir
    path = os.path.join(cache_dir(), SUBDIR)
    jax.config.update("jax_compilation_cache_dir", path)
    log.info("JAX's persistent compilation cache: %s (set jax_compilation_cache_dir to choose another).", path)
    return path
