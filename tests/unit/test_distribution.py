"""Scale-out on existing engines (issue 17), each case in a subprocess bounded in time,
on virtual CPU devices and local processes only (127.0.0.1)."""

import json
import os
import re
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
    from keras_bigtransfer.models.bit.model import bottleneck_unit
    from keras_bigtransfer.models.vit.model import VisionTransformer
    from tests.toys import tiny_model, colour_data
    devices = keras.distribution.list_devices()
    assert len(devices) == 2, devices
""") + FIT + textwrap.dedent("""
    out = {{"single": fit(), "data_parallel": fit(keras.distribution.DataParallel(devices=devices))}}

    # The large variants' layout map, applied (by name) to small builds of the same families.
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), devices)
    def mini_bit():  # BiT's own bottleneck units (their names), stages 3 and 4, narrow
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(64, 3, strides=2, name="root_block_standardized_conv2d")(inputs)
        for block in (3, 4):
            x = bottleneck_unit(x, 32 * (block - 2), 2, f"block{{block}}_unit01")  # GroupNorm: 32 groups
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(5, name="head")(x))

    builders = {{
        "vit": lambda: VisionTransformer(patch_size=16, hidden_size=32, mlp_size=64, num_heads=2, num_layers=2,
                                         num_classes=5, input_shape=(32, 32, 3), pretrained_resolution=32),
        "bit": mini_bit,
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


WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    kind, index = sys.argv[1], int(sys.argv[2])
    if kind == "tf":
        import tensorflow as tf
        strategy = tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ else None
    import keras
    if kind == "jax" and len(sys.argv) > 3:
        keras.distribution.initialize(job_addresses=sys.argv[3], num_processes=2, process_id=index)
    import keras_bigtransfer as kb
    from tests.toys import tiny_model, colour_data
    distribution = None
    if kind == "jax" and len(sys.argv) > 3:
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    keras.distribution.set_distribution(distribution)
    if kind == "tf" and strategy is not None:
        with strategy.scope():
            model = tiny_model(seed=0)
    else:
        strategy, model = None, tiny_model(seed=0)
    history = kb.fit_bit(model, colour_data(64, seed=5), batch_size=16, base_lr=0.4, total_steps=4,
                         resolution=16, verbose=0, strategy=strategy)
    print("RESULT " + json.dumps(history.history["loss"]))
""")


def _workers(kind, tmp_path, extra_env, args):
    script = tmp_path / f"worker_{kind}.py"
    script.write_text(WORKER.format(root=ROOT))
    procs = [subprocess.Popen([sys.executable, str(script), kind, str(i), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(ENV, **extra_env(i)))
             for i in range(2)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            results.append(_result(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


def _single(kind, tmp_path, env):
    script = tmp_path / f"worker_{kind}.py"
    script.write_text(WORKER.format(root=ROOT))
    return _result(subprocess.run([sys.executable, str(script), kind, "0"], capture_output=True, text=True,
                                  timeout=300, env=dict(ENV, **env)))


# Keras 3.15 model.fit (keras/src/backend/tensorflow/trainer.py:372) calls _maybe_symbolic_build,
# which at trainer.py:731 passes the whole (x, y) batch, a tuple of PerReplica, to
# strategy.reduce("MEAN", ..., axis=None). tf.distribute's reduce takes one value, not a nest
# (distribute_lib.py:1779 "TODO: support `value` being a nest"); MirroredStrategy's _reduce_to maps
# over the nest anyway (mirrored_strategy.py:789), MultiWorkerMirroredStrategy's does not
# (collective_all_reduce_strategy.py:957 -> cross_device_ops.py:124 convert_to_tensor(tuple)):
# ValueError "Attempt to convert a value (PerReplica...)" before the first step. The reduce runs on
# every fit of a model built in the strategy's scope, whatever is already built, so no supported
# call avoids it. Upstream: keras-team/keras#20585 (open; TF's own multi-worker Keras tutorial
# fails the same way), ray-project/ray#47464 (same error from Ray's TF trainer).
# Only that error is expected (any other failure fails the test), and a Keras that fixes it makes
# the test pass for real.
KERAS_MWMS_BUG = re.compile(r"unsupported type \(<class '[\w.]*PerReplica'>\) to a Tensor")


@pytest.mark.slow
def test_tensorflow_multi_worker_mirrored_matches_one_worker(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    config = lambda i: {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),  # noqa: E731
                        "KERAS_BACKEND": "tensorflow"}
    try:
        workers = _workers("tf", tmp_path, config, [])
    except AssertionError as failure:
        if KERAS_MWMS_BUG.search(str(failure)):
            pytest.xfail("Keras 3.15 trainer.py:731 strategy.reduce()s a tuple of PerReplica, which "
                         "MultiWorkerMirroredStrategy cannot (keras-team/keras#20585)")
        raise
    single = _single("tf", tmp_path, {"KERAS_BACKEND": "tensorflow"})
    for losses in workers:
        np.testing.assert_allclose(losses, single, rtol=1e-3)


@pytest.mark.slow
def test_jax_two_processes_match_one_process(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    workers = _workers("jax", tmp_path, lambda i: {"KERAS_BACKEND": "jax"}, [address])
    single = _single("jax", tmp_path, {"KERAS_BACKEND": "jax"})
    for losses in workers:
        np.testing.assert_allclose(losses, single, rtol=1e-3)
