"""Scale-out on existing engines (issue 17), each case in a subprocess bounded in time,
on virtual CPU devices and local processes only (127.0.0.1)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.toys import ROOT

ENV = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")

FIT = """
def fit(distribution=None):
    keras.distribution.set_distribution(distribution)
    model = tiny_model(seed=0)
    history = kb.fit_bit(model, colour_data(64, seed=5), batch_size=16, base_lr=0.4, total_steps=4,
                         resolution=16, verbose=0)
    return history.history["loss"]
"""

JAX_DEVICES = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import keras, numpy as np
    import keras_bigtransfer as kb
    from keras_bigtransfer import distribution as kd
    from keras_bigtransfer.models.bit.model import ResNetV2
    from keras_bigtransfer.models.vit.model import VisionTransformer
    from tests.toys import tiny_model, colour_data
    devices = keras.distribution.list_devices()
    assert len(devices) == 2, devices
""") + FIT + textwrap.dedent("""
    out = {{"single": fit(), "data_parallel": fit(keras.distribution.DataParallel(devices=devices))}}

    # The large variants' layout map, applied (by name) to small builds of the same families.
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), devices)
    builders = {{
        "vit": lambda: VisionTransformer(patch_size=16, hidden_size=32, mlp_size=64, num_heads=2, num_layers=2,
                                         num_classes=5, input_shape=(32, 32, 3), pretrained_resolution=32),
        "bit": lambda: ResNetV2(50, 1, num_classes=5, input_shape=(32, 32, 3)),
    }}
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    for family, build in builders.items():
        keras.distribution.set_distribution(None)
        plain = build()
        rng = np.random.default_rng(1)
        weights = [rng.standard_normal(w.shape).astype("float32") * 0.05 for w in plain.get_weights()]
        plain.set_weights(weights)
        want = keras.ops.convert_to_numpy(plain(x))
        keras.distribution.set_distribution(kd.model_parallel(family, mesh))
        sharded = build()
        sharded.set_weights(weights)
        got = keras.ops.convert_to_numpy(sharded(x))
        split = [v.path for v in sharded.weights if "model" in str(v.value.sharding.spec)]
        out[family] = {{"max_diff": float(np.abs(got - want).max()), "scale": float(np.abs(want).max()),
                        "sharded": len(split)}}
    print("RESULT " + json.dumps(out))
""")


def _result(done):
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][7:])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_jax_data_parallel_and_model_parallel_on_two_devices(tmp_path):
    script = tmp_path / "jax_devices.py"
    script.write_text(JAX_DEVICES.format(root=ROOT))
    env = dict(ENV, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = _result(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                                 env=env))
    np.testing.assert_allclose(out["data_parallel"], out["single"], rtol=1e-3)
    for family in ("vit", "bit"):
        assert out[family]["sharded"] > 0, out[family]  # the rules matched real variables
        assert out[family]["max_diff"] <= 1e-4 * max(1.0, out[family]["scale"]), out[family]
