"""fit_bit on JAX turns on JAX's persistent compilation cache under the package's cache directory,
unless the user chose a directory or turned the cache off (issue 27 item 3). One fresh JAX process:
the cache directory is JAX's process-wide config."""

import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SCRIPT = textwrap.dedent("""
    import os, sys
    import jax
    import numpy as np
    import keras_bigtransfer as kb
    from keras_bigtransfer.training.compilation_cache import enable_jax_compilation_cache
    from tests.toys import tiny_model

    home = sys.argv[1]
    assert jax.config.jax_compilation_cache_dir is None
    # fit_bit sets ours where the user set none.
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    kb.fit_bit(tiny_model(), (images, np.arange(8) % 2), batch_size=4, total_steps=1, resolution=16, verbose=0)
    ours = os.path.join(home, "jax_compilation_cache")
    assert jax.config.jax_compilation_cache_dir == ours, jax.config.jax_compilation_cache_dir
    # A directory the user set is kept.
    jax.config.update("jax_compilation_cache_dir", os.path.join(home, "mine"))
    assert enable_jax_compilation_cache() == os.path.join(home, "mine")
    assert jax.config.jax_compilation_cache_dir == os.path.join(home, "mine")
    # A cache the user turned off stays off.
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_enable_compilation_cache", False)
    assert enable_jax_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
    print("OK")
""")


def test_fit_bit_sets_the_jax_cache_only_where_the_user_did_not(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(KERAS_BACKEND="jax", KERAS_BIGTRANSFER_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-4000:]
