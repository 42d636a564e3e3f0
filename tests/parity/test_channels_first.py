"""Every family under `keras.config.image_data_format() == "channels_first"` (NCHW end to end,
what a PyTorch user builds to skip Keras' NHWC<->NCHW copies) against the same model built
channels_last: the same timm checkpoint (random, non-zero weights) loaded into both through the
family's converter (Keras kernels are HWIO in either layout, so the converters do not change),
logits and features_only maps compared on transposed images, a `.keras` round trip, NHWC
images refused with the layout named. The smallest variant of
each family (`tests.toys.smallest_variants()`), and a toy R50+ViT hybrid.

Tolerance: max |channels_first - channels_last| <= 1e-4 * max |channels_last|, the families'
parity bound against timm: the two layouts sum convolutions and GroupNorm statistics in other
orders (float32 rounding; BiT-S-R50x1 measured 2.3e-5 on TensorFlow)."""

import contextlib

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from tests import reference
from tests.toys import smallest_variants

pytestmark = pytest.mark.backends  # the whole module runs on JAX and PyTorch too

RTOL = 1e-4
SIDE = 64
NUM_CLASSES = 5
# The timm model whose random weights each family loads (its converter's input).
TIMM = {"BiT_S_R50x1": "resnetv2_50x1_bit", "EfficientNetLite0": "tf_efficientnet_lite0",
        "ViT_Ti16": "vit_tiny_patch16_224"}


@contextlib.contextmanager
def image_data_format(value):
    """Keras' global image data format set to `value` for the block, then put back."""
    before = keras.config.image_data_format()
    keras.config.set_image_data_format(value)
    try:
        yield
    finally:
        keras.config.set_image_data_format(before)


@pytest.fixture(autouse=True)
def global_format_restored():
    """No test here leaves the global data format changed for the tests after it."""
    before = keras.config.image_data_format()
    yield
    assert keras.config.image_data_format() == before


def test_the_smallest_variants_are_covered():
    assert sorted(smallest_variants()) == sorted(TIMM)


@pytest.fixture(scope="module", params=sorted(TIMM))
def checkpoint(request, tmp_path_factory):
    """(variant name, a timm .safetensors of random non-zero weights for it)."""
    import torch
    from safetensors.torch import save_file

    name, arch = request.param, TIMM[request.param]
    torch.manual_seed(0)
    if name.startswith("BiT"):
        model = reference.timm_bit(arch, num_classes=NUM_CLASSES)
    elif name.startswith("ViT"):
        model = reference.timm_vit(arch, num_classes=NUM_CLASSES)
    else:
        import timm

        model = reference.randomize_batchnorm(timm.create_model(arch, num_classes=NUM_CLASSES).eval(), 0)
    path = tmp_path_factory.mktemp("channels_first") / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return name, str(path)


def _build(name, path, data_format, **kwargs):
    with image_data_format(data_format):
        return kb.create_model(name, weights=path, num_classes=NUM_CLASSES, **kwargs)


@pytest.fixture(scope="module")
def pair(checkpoint):
    name, path = checkpoint
    return _build(name, path, "channels_last"), _build(name, path, "channels_first")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((2, SIDE, SIDE, 3), dtype=np.float32)


def _nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def _rel(got, want):
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def test_logits_match_channels_last(pair, images):
    last, first = pair
    assert first.data_format == "channels_first" and last.data_format == "channels_last"
    assert tuple(first.inputs[0].shape) == (None, 3, None, None)
    want = keras.ops.convert_to_numpy(last(images))
    assert want.shape == (2, NUM_CLASSES) and np.abs(want).max() > 1e-2  # not a zero head
    got = keras.ops.convert_to_numpy(first(_nchw(images)))
    assert _rel(got, want) <= RTOL


def test_nhwc_images_are_refused_naming_the_layout(pair, images):
    first = pair[1]
    with pytest.raises(ValueError, match=r"channels_first \(batch, C, height, width\).*transpose"):
        first(images)
    with pytest.raises(ValueError, match=r"channels_first"):
        first.predict(images, verbose=0)


def test_features_only_match_channels_last(checkpoint, images):
    name, path = checkpoint
    last = _build(name, path, "channels_last", features_only=True)
    first = _build(name, path, "channels_first", features_only=True)
    assert first.feature_info == last.feature_info
    want = last(images)
    got = first(_nchw(images))
    assert len(got) == len(want) == len(first.feature_info)
    for f, a, b in zip(first.feature_info, got, want):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        assert a.shape[1] == f["num_chs"] and a.shape[2] == -(-SIDE // f["reduction"])
        assert _rel(np.transpose(a, (0, 2, 3, 1)), b) <= RTOL, f["name"]


@pytest.fixture(scope="module")
def hybrid_pair():
    """A toy R50+ViT hybrid (feature-map output) built in both layouts, the same random weights."""
    from keras_bigtransfer.models.vit.model import VisionTransformer

    def build(data_format):
        with image_data_format(data_format):
            return VisionTransformer(patch_size=1, hidden_size=32, mlp_size=64, num_heads=2, num_layers=1,
                                     resnet_layers=(1, 1), num_classes=NUM_CLASSES, pretrained_resolution=64,
                                     include_top=False, pooling=None, name="hybrid")

    last, first = build("channels_last"), build("channels_first")
    reference.randomize_affine_and_head(last, seed=0)
    first.set_weights(last.get_weights())  # the same variables, the same shapes (HWIO kernels)
    return last, first


def test_r50_hybrid_matches_channels_last_and_round_trips(hybrid_pair, images, tmp_path):
    """The hybrid's ResNet (GroupNorm, standardized convs) and its 1x1 patch embedding, as a toy,
    on uint8 grayscale (the image rule on axis 1: divided by 255, repeated to RGB); its `.keras`
    round trip keeps the layout (the layers' configs carry it, not the global)."""
    last, first = hybrid_pair
    gray = (images[..., :1] * 255).astype(np.uint8)
    want = keras.ops.convert_to_numpy(last(gray))  # (batch, h, w, hidden)
    got = keras.ops.convert_to_numpy(first(_nchw(gray)))  # (batch, hidden, h, w)
    assert got.shape == (2, 32, SIDE // 8, SIDE // 8)
    assert _rel(np.transpose(got, (0, 2, 3, 1)), want) <= RTOL
    path = str(tmp_path / "first.keras")
    first.save(path)
    loaded = keras.saving.load_model(path)  # under channels_last: the configs decide
    assert loaded.data_format == "channels_first"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(_nchw(gray))), got)


@pytest.mark.parametrize("format", ["saved_model", "litert", "onnx", "openvino"])
def test_export_refuses_channels_first_before_any_work(hybrid_pair, format, tmp_path):
    """Every export takes NHWC images: a channels_first model is refused in one line naming the
    fix (a channels_last copy), before a file is written or a converter imported."""
    from keras_bigtransfer import deploy, export_routes

    if keras.backend.backend() not in export_routes.BACKENDS[format]:
        pytest.skip(f"{format} is not written from {keras.backend.backend()} (refused before the layout)")
    target = tmp_path / "export"
    with pytest.raises(ValueError, match=r"^hybrid was built channels_first .*set_image_data_format\(\"channels_last\"\)"):
        if format == "saved_model":
            kb.hub.export(hybrid_pair[1], str(target))
        else:
            deploy.export(hybrid_pair[1], str(target), format, input_shape=(64, 64))
    assert not any(tmp_path.iterdir())


def test_fit_bit_feeds_a_channels_first_model_nchw_batches():
    """fit_bit's pipelines give a channels_first model NCHW batches: the same images as the
    channels_last batches, transposed; and a 2-step fit_bit of such a model runs."""
    from keras_bigtransfer.training import data as data_lib
    from keras_bigtransfer.training.fit_bit import fit_bit
    from keras_bigtransfer.training.hyperrule import hyperrule

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8) % NUM_CLASSES
    source = data_lib.load_source((x, y))
    rule = hyperrule(8, (32, 32), batch_size=4)
    for pipeline, args in ((data_lib.train_pipeline, {}), (data_lib.eval_pipeline, {"batch_size": 4})):
        last = next(iter(pipeline(source, rule, NUM_CLASSES, **args)))[0].numpy()
        first = next(iter(pipeline(source, rule, NUM_CLASSES, data_format="channels_first", **args)))[0].numpy()
        np.testing.assert_array_equal(first, np.transpose(last, (0, 3, 1, 2)))
    with image_data_format("channels_first"):
        model = kb.ViT_Ti16(weights=None, num_classes=NUM_CLASSES, input_shape=(3, 32, 32))
    grad = contextlib.nullcontext()
    if keras.backend.backend() == "torch":  # tests/conftest.py turns torch's autograd off
        import torch

        grad = torch.enable_grad()
    with grad:
        history = fit_bit(model, (x, y), total_steps=2, batch_size=4, resolution=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def _tiny(seed):
    """A small model of the package's shape (input contract, WSConv2D, GroupNorm, "head") in the
    global layout; the same seed gives the same weights in either layout (kernels are HWIO)."""
    from keras_bigtransfer.models import base

    keras.utils.set_random_seed(seed)
    shape = (3, None, None) if keras.config.image_data_format() == "channels_first" else (None, None, 3)
    inputs = base.image_inputs(shape)
    x = kb.layers.WSConv2D(8, 3, strides=4, use_bias=False)(base.input_contract(inputs))
    x = kb.layers.ImageGroupNormalization(4, axis=base.channel_axis())(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return kb.ImageModel(inputs, keras.layers.Dense(2, name="head")(x), name="tiny")


@pytest.mark.parametrize("recipe", ["noisy_student", "meta_pseudo_labels"])
def test_semi_supervised_recipes_train_a_channels_first_pair_as_channels_last(recipe):
    """Noisy Student and Meta Pseudo Labels feed channels_first models NCHW batches (RandAugment
    still on NHWC before the transposition): from the same weights and seeds, the trained
    students agree with the channels_last run on transposed images, within the module's bound
    (after 4 + 2 steps: measured 1e-6 of the largest logit); a mixed pair is refused first."""
    rng = np.random.default_rng(0)
    labeled = rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), np.arange(32) % 2
    unlabeled = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    fit = {"noisy_student": kb.fit_noisy_student, "meta_pseudo_labels": kb.fit_meta_pseudo_labels}[recipe]
    # Noisy Student: every unlabeled image kept with its soft label (class balancing ranks the
    # teacher's near-equal probabilities, which rounding in either layout may reorder), and no
    # RandAugment: building its tf.data map takes Keras 17 s on JAX (0.7 s on TensorFlow).
    # test_noisy_student_batches_are_transposed_after_randaugment checks that pipeline's layout;
    # tests/unit/test_training_backends.py that fit trains on a stateful pipeline's first batches.
    settings = ({"iterations": 1, "steps": 4, "confidence_threshold": 0.0, "balance": False, "soft_labels": True,
                 "randaugment": None} if recipe == "noisy_student" else {"steps": 4, "finetune_steps": 2})
    grad = contextlib.nullcontext()
    if keras.backend.backend() == "torch":  # tests/conftest.py turns torch's autograd off
        import torch

        grad = torch.enable_grad()
    students = {}
    for data_format in ("channels_last", "channels_first"):
        with image_data_format(data_format):
            teacher, student = _tiny(seed=0), _tiny(seed=1)
        with grad:
            student, _ = fit(teacher, student, labeled, unlabeled, batch_size=8, unlabeled_ratio=2,
                             resolution=16, **settings)
        students[data_format] = student
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    last = keras.ops.convert_to_numpy(students["channels_last"](x))
    first = keras.ops.convert_to_numpy(students["channels_first"](_nchw(x)))
    assert _rel(first, last) <= RTOL
    with image_data_format("channels_first"):
        teacher = _tiny(seed=0)
    with pytest.raises(ValueError, match="teacher takes channels_first images, student channels_last"):
        fit(teacher, _tiny(seed=1), labeled, unlabeled, batch_size=8, resolution=16, **settings)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a tf.data pipeline, the same on every backend; Keras builds its RandAugment map in 17 s "
                           "on JAX (0.7 s on TensorFlow)")
def test_noisy_student_batches_are_transposed_after_randaugment():
    """The student's batches for a channels_first model are the channels_last batches,
    RandAugment included, transposed to NCHW."""
    from keras_bigtransfer.training import data as data_lib
    from keras_bigtransfer.training.semi_supervised import noisy_student
    from keras_bigtransfer.training.semi_supervised.common import train_rule

    rng = np.random.default_rng(0)
    labeled = data_lib.load_source((rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), np.arange(32) % 2))
    unlabeled = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    targets = np.full((64, 2), 0.5, "float32")
    rule = train_rule(labeled, 8, 16, 4)
    batches = {}
    for data_format in ("channels_last", "channels_first"):
        ds = noisy_student.student_dataset(labeled, unlabeled, targets, rule, 2, unlabeled_ratio=2,
                                           label_smoothing=0.1, randaugment=(2, 9), seed=1, data_format=data_format)
        batches[data_format] = [x for x, _ in ds.take(3).as_numpy_iterator()]
    for last, first in zip(batches["channels_last"], batches["channels_first"]):
        assert first.shape == (24, 3, 16, 16)
        np.testing.assert_array_equal(first, np.transpose(last, (0, 3, 1, 2)))
