"""What the benchmark measures: the subjects (a name, a builder, how a user runs it), the
option rows, and the (ours, peer, target) comparisons of the ratio table.

A subject is `SUBJECTS[name](size, batch, precision="float32", device="cpu")`, which builds
the model once and returns `{"inference": f, "training": f or None, "latency": f}`: batch
`batch` through the model, one training step at that batch, and one image (batch 1). Keras
models run as users run them: `predict_on_batch` / `train_on_batch` after `compile()` with its
default `jit_compile="auto"` (XLA on JAX, and on TensorFlow only with an accelerator; eager on
PyTorch), on inputs already converted to the backend's tensors. timm runs in `eval()` under
`torch.inference_mode()` and trains with SGD, in the same process, on the same device.
"""

import contextlib
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

PRECISIONS = ("float32", "bfloat16")


def threads():
    return len(os.sched_getaffinity(0))


def _inputs(size, batch, classes=1000):
    rng = np.random.default_rng(0)
    return rng.random((batch, size, size, 3), dtype=np.float32), rng.integers(0, classes, batch)


def keras_subject(build, *, jit="auto", policy=None, train=True, data_format="channels_last"):
    """A Keras model, run by Keras' own predict and train steps.

    `policy` overrides the run's precision (the bf16 option row); `jit=True` is the XLA row;
    `data_format="channels_first"`: built under that global image data format and fed NCHW
    batches (the PyTorch advice of docs/backends.md).
    """

    def make(size, batch, precision="float32", device="cpu"):
        import keras

        wanted = policy or ("mixed_bfloat16" if precision == "bfloat16" else "float32")
        keras.mixed_precision.set_global_policy(wanted)
        layout = keras.config.image_data_format()
        keras.config.set_image_data_format(data_format)
        try:
            model = build(size)
        finally:
            keras.mixed_precision.set_global_policy("float32")
            keras.config.set_image_data_format(layout)
        model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        x, y = _inputs(size, batch)
        if data_format == "channels_first":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        # Backend tensors: on an accelerator the batch stays on the device, as a data pipeline's would.
        x, y, one = (keras.ops.convert_to_tensor(a) for a in (x, y, x[:1]))
        return {"inference": lambda: model.predict_on_batch(x),
                "training": (lambda: model.train_on_batch(x, y)) if train else None,
                "latency": lambda: model.predict_on_batch(one)}

    return make


def saved_model_subject(build):
    """TensorFlow only: the exported SavedModel (weight standardization folded), inference only."""

    def make(size, batch, precision="float32", device="cpu"):
        import tensorflow as tf

        from keras_bigtransfer.tfhub import export as publishing

        path = publishing.export(build(size), tempfile.mkdtemp(prefix="bench_sm_"), signature="classification")
        loaded = tf.saved_model.load(path)
        x = tf.constant(_inputs(size, batch)[0])
        return {"inference": lambda: loaded(x, training=False).numpy(), "training": None,
                "latency": lambda: loaded(x[:1], training=False).numpy()}

    return make


def torch_subject(name, **overrides):
    """A timm model on `device`; bfloat16 is `torch.autocast` (timm's own AMP recipe)."""

    def make(size, batch, precision="float32", device="cpu"):
        kwargs = {"img_size": size} if "vit" in name else {}
        model = timm.create_model(name, pretrained=False, num_classes=1000, **kwargs, **overrides).to(device)
        x, y = (torch.from_numpy(a).to(device) for a in _inputs(size, batch))
        x = x.permute(0, 3, 1, 2).contiguous()
        one = x[:1].contiguous()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        cuda = device != "cpu"

        def autocast():
            if precision == "bfloat16":
                return torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def sync():  # CUDA calls return before the work is done
            if cuda:
                torch.cuda.synchronize()

        def infer(images):
            model.eval()
            with torch.inference_mode(), autocast():
                model(images)
            sync()

        def train():
            model.train()
            optimizer.zero_grad()
            with torch.enable_grad(), autocast():  # enabled even where the caller turned grad off
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            sync()

        return {"inference": lambda: infer(x), "training": train, "latency": lambda: infer(one)}

    return make


def _ours(constructor, **kwargs):
    def build(size):
        import keras_bigtransfer as kb

        import keras

        shape = (3, size, size) if keras.config.image_data_format() == "channels_first" else (size, size, 3)
        return getattr(kb, constructor)(weights=None, num_classes=1000, input_shape=shape, **kwargs)

    return build


def _keras_app(name):
    def build(size):
        import keras

        return getattr(keras.applications, name)(
            weights=None, classes=1000, input_shape=(size, size, 3), classifier_activation=None
        )

    return build


# The issue 27 table, in the order a repeat runs them (each family's subjects side by side).
SUBJECTS = {
    "ours BiT-M-R50x1": keras_subject(_ours("BiT_M_R50x1")),
    "keras.applications ResNet50V2": keras_subject(_keras_app("ResNet50V2")),
    "timm resnetv2_50x1_bit": torch_subject("resnetv2_50x1_bit"),
    "ours EfficientNet-B0": keras_subject(_ours("EfficientNetB0")),
    "keras.applications EfficientNetB0": keras_subject(_keras_app("EfficientNetB0")),
    "timm tf_efficientnet_b0": torch_subject("tf_efficientnet_b0"),
    "ours ViT-B/16": keras_subject(_ours("ViT_B16")),
    "timm vit_base_patch16_224": torch_subject("vit_base_patch16_224"),
}

# Option rows (TensorFlow, CPU, inference only; XLA training compiles for minutes on 2 cores):
# `run.py --parts=...,options`.
OPTION_SUBJECTS = {
    "ours BiT-M-R50x1 XLA": keras_subject(_ours("BiT_M_R50x1"), jit=True, train=False),
    "ours BiT-M-R50x1 bf16": keras_subject(_ours("BiT_M_R50x1"), policy="mixed_bfloat16", train=False),
    "ours BiT-M-R50x1 SavedModel (WS folded)": saved_model_subject(_ours("BiT_M_R50x1")),
    "ours EfficientNet-B0 XLA": keras_subject(_ours("EfficientNetB0"), jit=True, train=False),
    "ours EfficientNet-B0 bf16": keras_subject(_ours("EfficientNetB0"), policy="mixed_bfloat16", train=False),
    "ours EfficientNet-B0 SavedModel": saved_model_subject(_ours("EfficientNetB0")),
    "ours ViT-B/16 XLA": keras_subject(_ours("ViT_B16"), jit=True, train=False),
    "ours ViT-B/16 bf16": keras_subject(_ours("ViT_B16"), policy="mixed_bfloat16", train=False),
    "ours ViT-B/16 SavedModel": saved_model_subject(_ours("ViT_B16")),
}
OPTIONS = ("XLA", "bf16", "SavedModel")

# PyTorch rows of the main table (issue 27 item 2): the same models built under
# keras.config.image_data_format() == "channels_first" and fed NCHW batches, which skips the
# NHWC<->NCHW copies Keras' torch backend makes around each convolution.
TORCH_SUBJECTS = {
    "ours BiT-M-R50x1 channels_first": keras_subject(_ours("BiT_M_R50x1"), data_format="channels_first"),
    "ours EfficientNet-B0 channels_first": keras_subject(_ours("EfficientNetB0"), data_format="channels_first"),
}

def _tiny_vit(size):
    from keras_bigtransfer.models.vit import VisionTransformer

    return VisionTransformer(patch_size=16, hidden_size=192, mlp_size=768, num_heads=3, num_layers=2,
                             num_classes=1000, input_shape=(size, size, 3), name="vit_ti16_2_blocks")


# `run.py --quick`: one tiny pair (ViT-Ti/16 cut to 2 blocks), seconds on any backend: a smoke
# test of the whole path, not a measurement.
QUICK_SUBJECTS = {
    "ours ViT-Ti/16 2 blocks": keras_subject(_tiny_vit),
    "timm vit_tiny_patch16_224 2 blocks": torch_subject("vit_tiny_patch16_224", depth=2),
}

ALL_SUBJECTS = {**SUBJECTS, **OPTION_SUBJECTS, **TORCH_SUBJECTS, **QUICK_SUBJECTS}

# (ours, peer, target): the rows of the ratio table. A target is issue 27's minimum for the
# median inference ratio (ours / peer, 224 px, batch 16, 2 cores): a number for every
# backend, or {backend: number} where it holds on some backends only; None: no target.
COMPARISONS = [
    ("ours BiT-M-R50x1", "keras.applications ResNet50V2", 0.9),
    ("ours BiT-M-R50x1", "timm resnetv2_50x1_bit", 1.0),
    ("ours BiT-M-R50x1 XLA", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 bf16", "keras.applications ResNet50V2", None),
    ("ours BiT-M-R50x1 SavedModel (WS folded)", "keras.applications ResNet50V2", None),
    ("ours EfficientNet-B0", "keras.applications EfficientNetB0", 1.0),
    ("ours EfficientNet-B0", "timm tf_efficientnet_b0", {"torch": 0.8}),
    ("ours BiT-M-R50x1 channels_first", "ours BiT-M-R50x1", None),
    ("ours BiT-M-R50x1 channels_first", "timm resnetv2_50x1_bit", {"torch": 1.0}),
    ("ours EfficientNet-B0 channels_first", "ours EfficientNet-B0", None),
    ("ours EfficientNet-B0 channels_first", "timm tf_efficientnet_b0", {"torch": 0.8}),
    ("ours EfficientNet-B0 XLA", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 bf16", "keras.applications EfficientNetB0", None),
    ("ours EfficientNet-B0 SavedModel", "keras.applications EfficientNetB0", None),
    ("ours ViT-B/16", "timm vit_base_patch16_224", 1.0),
    ("ours ViT-B/16 XLA", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 bf16", "timm vit_base_patch16_224", None),
    ("ours ViT-B/16 SavedModel", "timm vit_base_patch16_224", None),
    ("ours ViT-Ti/16 2 blocks", "timm vit_tiny_patch16_224 2 blocks", None),
]


def subjects_for(backend, options=False, quick=False, only=""):
    """The subjects a backend runs, in order: the option rows are TensorFlow's; `only` keeps
    names containing one of its comma-separated substrings (any case)."""
    if quick:
        names = list(QUICK_SUBJECTS)
    else:
        names = list(SUBJECTS)
        if backend == "torch":  # each beside its channels_last row
            for name in TORCH_SUBJECTS:
                names.insert(names.index(name.replace(" channels_first", "")) + 1, name)
        if options and backend == "tensorflow":
            names += list(OPTION_SUBJECTS)
    keep = [s.lower() for s in only.split(",") if s]
    return [n for n in names if not keep or any(s in n.lower() for s in keep)]
