"""What the benchmark measures: the subjects (a name, a builder, how to run it), the option
rows, and the (ours, peer, target) comparisons of the ratio table."""

import tempfile

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# torch (and timm) first: the CUDA build's triton crashes when loaded after TensorFlow.
import torch  # noqa: E402,F401
import timm  # noqa: E402,F401
import numpy as np  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def threads():
    return len(os.sched_getaffinity(0))


def keras_subject(build, *, jit=False, bf16=False, train=True):
    def make(size, batch):
        import keras

        if keras.backend.backend() != "tensorflow":
            return _keras_backend_subject(build, size, batch)
        import tensorflow as tf

        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        try:
            model = build(size)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        infer = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        model.compile(
            optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((batch, size, size, 3), dtype=np.float32))
        y = tf.constant(rng.integers(0, 1000, batch))
        return (lambda: infer(x).numpy()), ((lambda: model.train_on_batch(x, y)) if train else None)

    return make


def _keras_backend_subject(build, size, batch):
    """JAX or PyTorch: Keras' own predict and train steps (jitted on JAX, eager on PyTorch)."""
    import keras

    model = build(size)
    model.compile(
        optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=keras.backend.backend() == "jax",  # torch.compile is not what users get by default
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 1000, batch)
    return (lambda: model.predict_on_batch(x)), (lambda: model.train_on_batch(x, y))


def subjects_for(backend, options=True):
    """The subjects a backend runs: the option rows (XLA, bf16, SavedModel) are TensorFlow's."""
    return [n for n in SUBJECTS if (options and backend == "tensorflow") or not any(o in n for o in OPTIONS)]


def saved_model_subject(build):
    def make(size, batch):
        import tensorflow as tf

        from keras_bigtransfer.tfhub import export as publishing

        path = publishing.export(build(size), tempfile.mkdtemp(prefix="bench_sm_"), signature="classification")
        loaded = tf.saved_model.load(path)
        x = tf.constant(np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32))
        return (lambda: loaded(x, training=False).numpy()), None

    return make


def torch_subject(name):
    def make(size, batch):
        model = timm.create_model(name, pretrained=False, num_classes=1000, img_size=size) \
            if "vit" in name else timm.create_model(name, pretrained=False, num_classes=1000)
        x = torch.rand(batch, 3, size, size)
        y = torch.randint(0, 1000, (batch,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

        def infer():
            model.eval()
            with torch.inference_mode():
                model(x)

        def train():
            model.train()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        return infer, train

    return make


def _ours(constructor, **kwargs):
    def build(size):
        import keras_bigtransfer as kb

        return getattr(kb, constructor)(weights=None, num_classes=1000, input_shape=(size, size, 3), **kwargs)

    return build


def _keras_app(name):
    def build(size):
        import keras

        return getattr(keras.applications, name)(
            weights=None, classes=1000, input_shape=(size, size, 3), classifier_activation=None
        )

    return build


SUBJECTS = {
    "ours BiT-M-R50x1": keras_subject(_ours("BiT_M_R50x1")),
    "ours BiT-M-R50x1 XLA": keras_subject(_ours("BiT_M_R50x1"), jit=True, train=False),
    "ours BiT-M-R50x1 bf16": keras_subject(_ours("BiT_M_R50x1"), bf16=True, train=False),
    "ours BiT-M-R50x1 SavedModel (WS folded)": saved_model_subject(_ours("BiT_M_R50x1")),
    "keras.applications ResNet50V2": keras_subject(_keras_app("ResNet50V2")),
    "timm resnetv2_50x1_bit": torch_subject("resnetv2_50x1_bit"),
    "ours EfficientNet-B0": keras_subject(_ours("EfficientNetB0")),
    "ours EfficientNet-B0 XLA": keras_subject(_ours("EfficientNetB0"), jit=True, train=False),
    "ours EfficientNet-B0 bf16": keras_subject(_ours("EfficientNetB0"), bf16=True, train=False),
    "ours EfficientNet-B0 SavedModel": saved_model_subject(_ours("EfficientNetB0")),
    "keras.applications EfficientNetB0": keras_subject(_keras_app("EfficientNetB0")),
    "timm tf_efficientnet_b0": torch_subject("tf_efficientnet_b0"),
    "ours ViT-B/16": keras_subject(_ours("ViT_B16")),
    "ours ViT-B/16 XLA": keras_subject(_ours("ViT_B16"), jit=True, train=False),
    "ours ViT-B/16 bf16": keras_subject(_ours("ViT_B16"), bf16=True, train=False),
    "ours ViT-B/16 SavedModel": saved_model_subject(_ours("ViT_B16")),
    "timm vit_base_patch16_224": torch_subject("vit_base_patch16_224"),
}

# Option rows (inference only; XLA training compiles for minutes on 2 cores).
OPTIONS = ("XLA", "bf16", "SavedModel")

# (ours, peer, target ratio or None): the rows of the ratio table.
COMPARISONS = [
    ("ours BiT-M-R50x1", "keras.applications ResNet50V2", 0.8),
    ("ours BiT-M-R50x1", "timm resnetv2_50x1_bit", 2.5),
    ("ours BiT-M-R50x1 XLA", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 bf16", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 SavedModel (WS folded)", "keras.applications ResNet50V2", None),
    ("ours EfficientNet-B0", "keras.applications EfficientNetB0", 1.0),
    ("ours EfficientNet-B0", "timm tf_efficientnet_b0", None),
    ("ours EfficientNet-B0 XLA", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 bf16", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 SavedModel", "keras.applications EfficientNetB0", None),
    ("ours ViT-B/16", "timm vit_base_patch16_224", 1.5),
    ("ours ViT-B/16 XLA", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 bf16", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 SavedModel", "timm vit_base_patch16_224", None),
]
