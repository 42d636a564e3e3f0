"""fit_bit's inputs (issue 15): the image rule, labels, class folders, ViT crops, few-shot."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bigtransfer as kb
from keras_bigtransfer.models import base
from keras_bigtransfer.models.vit import VisionTransformer
from keras_bigtransfer.training import data as data_lib


def tiny_model(num_classes=2, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = base.image_inputs((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=8)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return kb.ImageModel(inputs, keras.layers.Dense(num_classes, name="head")(x), name="tiny")


def tiny_vit(patch_size=14):
    keras.utils.set_random_seed(0)
    return VisionTransformer(patch_size=patch_size, hidden_size=8, mlp_size=8, num_heads=1, num_layers=1,
                             num_classes=2, name="vit_tiny")


def images_labels(n=8, size=16, dtype=np.uint8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, channels))
    images = images.astype(dtype) if dtype == np.uint8 else (images / 255.0).astype(dtype)
    return images, np.arange(n) % 2


def first_batch(ds):
    return next(iter(ds))


RULE = kb.hyperrule(8, 16, batch_size=4)


# --- 10: one image rule -----------------------------------------------------------------

def test_alpha_is_dropped_and_five_channels_refused_for_numpy_and_tf_data():
    """The models' rule (issue 29): RGBA and gray+alpha lose the alpha as Pillow's convert("RGB")."""
    images, labels = images_labels()
    x, _ = first_batch(data_lib.eval_pipeline(data_lib.load_source((images, labels)), RULE, 2, 8))
    rgba = np.concatenate([images, np.full_like(images[..., :1], 7)], axis=-1)
    gray_alpha = np.concatenate([images[..., :1], np.full_like(images[..., :1], 7)], axis=-1)
    for data in ((rgba, labels), tf.data.Dataset.from_tensor_slices((rgba, labels))):
        np.testing.assert_array_equal(first_batch(data_lib.eval_pipeline(data_lib.load_source(data), RULE, 2, 8))[0], x)
    y, _ = first_batch(data_lib.eval_pipeline(data_lib.load_source((gray_alpha, labels)), RULE, 2, 8))
    np.testing.assert_array_equal(y, np.repeat(x[..., :1], 3, -1))
    five = np.zeros((8, 16, 16, 5), np.uint8)
    with pytest.raises(ValueError, match="got 5 channels"):
        data_lib.load_source((five, labels))
    with pytest.raises(ValueError, match="got 5 channels"):  # static shape: refused at once
        data_lib.load_source(tf.data.Dataset.from_tensor_slices((five, labels)))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.int8, bool])
def test_integer_images_other_than_uint8_are_refused(dtype):
    images = np.ones((4, 16, 16, 3), dtype=dtype)
    with pytest.raises(ValueError, match=f"dtype {np.dtype(dtype).name}.*uint8.*float in \\[0, 1\\]"):
        data_lib.load_source((images, np.zeros(4, int)))
    with pytest.raises(ValueError, match="dtype"):
        data_lib.load_source(tf.data.Dataset.from_tensor_slices((images, np.zeros(4, int))))


def test_uint8_is_divided_and_grayscale_repeated():
    images, labels = images_labels()
    x, _ = first_batch(data_lib.eval_pipeline(data_lib.load_source((images, labels)), RULE, 2, 8))
    expected = tf.image.resize(images.astype("float32") / 255.0, (128, 128))
    np.testing.assert_allclose(x, expected, atol=1e-5)
    for gray in (images[..., 0], images[..., :1]):  # (N, H, W) and (N, H, W, 1)
        x, _ = first_batch(data_lib.eval_pipeline(data_lib.load_source((gray, labels)), RULE, 2, 8))
        assert x.shape == (8, 128, 128, 3)
        np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_float_images_far_outside_unit_range_warn_once():
    images, labels = images_labels(dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # [0, 1] floats: no warning
        data_lib.load_source((images, labels))
    with pytest.warns(UserWarning, match=r"range over \[.*\], far outside the \[0, 1\] the package takes"):
        data_lib.load_source((images * 255, labels))
    # tf.data: checked per element, one warning per pipeline
    source = data_lib.load_source(tf.data.Dataset.from_tensor_slices((images * 255, labels)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(data_lib.eval_pipeline(source, RULE, 2, 4))
    assert len([w for w in caught if "far outside the [0, 1]" in str(w.message)]) == 1


def test_channels_known_only_at_run_time_are_checked_per_element():
    def generate():
        for channels in (1, 3, 4, 2, 5):
            yield np.zeros((16, 16, channels), np.uint8), np.int64(0)

    ds = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((None, None, None), tf.uint8), tf.TensorSpec((), tf.int64)))
    batches = iter(data_lib.eval_pipeline(data_lib.load_source(ds), RULE, 2, 1))
    for _ in range(4):  # 1, 3, 4 and 2 channels: RGB
        assert next(batches)[0].shape == (1, 128, 128, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="channel count the rule cannot convert"):
        next(batches)


# --- 11: labels -------------------------------------------------------------------------

@pytest.mark.parametrize("labels,match", [
    (np.array([0, -1, 1, 0]), r"labels\[1\] = -1"),
    (np.full(4, -1), "negative"),
    (np.array([0.0, 1.5, 1.0, 0.0]), r"whole numbers; labels\[1\] = 1.5"),
    (np.array([[0.5, 0.6]] * 4), "sum to 1"),
    (np.array([[-1.0, 2.0]] * 4), "non-negative"),
    (np.zeros((4, 2, 2)), "shape"),
    (np.array(["a", "b", "a", "b"]), "dtype"),
])
def test_labels_that_cannot_be_right_are_refused(labels, match):
    with pytest.raises(ValueError, match=match):
        data_lib.load_source((images_labels(4)[0], labels))


def test_tf_data_labels_are_checked_per_element():
    images, _ = images_labels(4)
    for labels, match in ((np.array([0, 1, -1, 0]), "class index is outside"),
                          (np.array([0, 1, 2, 0]), r"outside \[0, 2\)"),
                          (np.array([0.0, 0.5, 1.0, 0.0]), "fractional"),
                          (np.array([[1.0, 0.0], [0.3, 0.3], [0, 1], [1, 0]]), "not non-negative summing to 1")):
        source = data_lib.load_source(tf.data.Dataset.from_tensor_slices((images, labels)))
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            list(data_lib.eval_pipeline(source, RULE, 2, 4))
    source = data_lib.load_source(tf.data.Dataset.from_tensor_slices((images, np.eye(3)[[0, 1, 2, 0]])))
    with pytest.raises(ValueError, match="length 3 but the model has 2 classes"):
        data_lib.eval_pipeline(source, RULE, 2, 4)


@pytest.mark.parametrize("form", ["index", "column", "float_index", "one_hot", "soft"])
@pytest.mark.parametrize("kind", ["numpy", "tf.data"])
def test_every_label_form_works_for_train_and_validation(form, kind):
    images, labels = images_labels(8)
    as_form = {
        "index": labels, "column": labels[:, None], "float_index": labels.astype("float32"),
        "one_hot": np.eye(2, dtype="float32")[labels],
        "soft": np.eye(2, dtype="float32")[labels] * 0.8 + 0.1,
    }[form]
    data = (images, as_form) if kind == "numpy" else tf.data.Dataset.from_tensor_slices((images, as_form))
    source = data_lib.load_source(data)
    rule = kb.hyperrule(8, 16, batch_size=4)
    _, y = first_batch(data_lib.train_pipeline(source, rule, 2))
    assert y.shape == (4, 2)
    _, y = first_batch(data_lib.eval_pipeline(source, rule, 2, 8))
    expected = np.eye(2)[labels] * 0.8 + 0.1 if form == "soft" else np.eye(2)[labels]
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_fit_bit_with_one_hot_train_and_validation_data():
    images, labels = images_labels(8)
    one_hot = np.eye(2, dtype="float32")[labels]
    history = kb.fit_bit(tiny_model(), (images, one_hot),
                         tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(4),
                         batch_size=4, total_steps=1, verbose=0)
    assert "val_accuracy" in history.history


def test_the_class_count_check_is_one_message_for_fit_bit_and_the_pipelines():
    """Issue 29: fit_bit and the pipelines checked the class count with two messages."""
    images, labels = images_labels(8)
    many = labels + 3  # labels up to 4: five classes for a two-class head
    want = ("the data has 5 classes (labels up to 4) but the model's head has 2: build the model with "
            "num_classes=5.")
    with pytest.raises(ValueError) as train:
        kb.fit_bit(tiny_model(), (images, many), verbose=0)
    with pytest.raises(ValueError) as validation:
        kb.fit_bit(tiny_model(), (images, labels), (images, many), batch_size=4, total_steps=1, verbose=0)
    with pytest.raises(ValueError) as pipeline:
        data_lib.eval_pipeline(data_lib.load_source((images, many)), RULE, 2, 4)
    assert [str(e.value) for e in (train, validation, pipeline)] == [
        f"train_data: {want}", f"validation_data: {want}", f"train_data: {want}"]


def test_a_one_class_head_is_refused():
    with pytest.raises(ValueError, match="head has 1 class; classification needs at least 2"):
        kb.fit_bit(tiny_model(1), images_labels(4), verbose=0)


# --- 13, 19: class folders --------------------------------------------------------------

def save(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_class_folders_read_each_image_at_its_own_size(tmp_path):
    rng = np.random.default_rng(0)
    save(tmp_path / "a" / "0.png", rng.integers(0, 256, (8, 64, 3), dtype=np.uint8))  # first, 8 x 64
    for i in range(1, 4):
        save(tmp_path / "a" / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        save(tmp_path / "b" / f"{i}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))  # grayscale
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    save(tmp_path / "b" / "rgba.png", rgba)
    source = data_lib.load_source(str(tmp_path))
    shapes = [x.shape for x, _ in source.dataset.as_numpy_iterator()]
    assert shapes[0] == (8, 64, 3) and set(shapes[1:]) == {(16, 16, 3)}
    assert source.image_size == (16, 16) and source.num_examples == 8 and source.num_classes == 2
    decoded = dict(zip([str(f) for f in sorted(tmp_path.glob("*/*"))], source.dataset.as_numpy_iterator()))
    np.testing.assert_array_equal(decoded[str(tmp_path / "b" / "rgba.png")][0], rgba[..., :3])  # alpha dropped


def test_class_folders_skip_non_images_and_name_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(2):
            save(tmp_path / c / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\1\2")
    (tmp_path / "a" / "labels.csv").write_text("file,label\n")
    save(tmp_path / "b" / "more" / "2.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\) that are not images"):
        source = data_lib.load_source(str(tmp_path))
    assert source.num_classes == 2 and source.num_examples == 5  # the sub-folder's image counts

    (tmp_path / "a" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jpg is not an image file"):
        kb.fit_bit(tiny_model(), str(tmp_path), batch_size=4, total_steps=1, verbose=0)
    (tmp_path / "a" / "empty.jpg").unlink()

    whole = (tmp_path / "b" / "0.png").read_bytes()
    (tmp_path / "b" / "0.png").write_bytes(whole[: len(whole) // 2])  # header intact, data cut
    with pytest.warns(UserWarning, match="skipped"):
        source = data_lib.load_source(str(tmp_path))
    with pytest.raises(tf.errors.OpError, match=r"0\.png is a damaged image"):
        list(source.dataset)


# --- 15, 24: numeric arguments ----------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"base_lr": float("nan")}, "base_lr"), ({"base_lr": float("inf")}, "base_lr"),
    ({"base_lr": -0.1}, "base_lr"), ({"base_lr": "0.1"}, "base_lr"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 8.5}, "batch_size"),
    ({"total_steps": 0}, "total_steps"), ({"total_steps": 2.5}, "total_steps"),
    ({"num_examples": 0}, "num_examples"), ({"examples_per_class": 0}, "examples_per_class"),
    ({"resolution": 4}, "resolution"), ({"seed": -1}, "seed"), ({"image_size": (16, 0)}, "image_size"),
])
def test_fit_bit_checks_numeric_arguments_before_reading_data(kwargs, match):
    # The data would fail to load (no such directory): the argument is checked first.
    with pytest.raises(ValueError, match=match):
        kb.fit_bit(tiny_model(), "/no/such/dir", verbose=0, **kwargs)


def test_numpy_integers_are_integers():
    images, labels = images_labels(8)
    source = data_lib.load_source((images, labels))
    rule = kb.hyperrule(np.int64(8), (np.int64(16), np.int32(16)), batch_size=np.int64(4))
    assert (rule.total_steps, rule.batch_size) == (64_000, 4)
    _, y = first_batch(data_lib.train_pipeline(source, rule.with_total_steps(np.int64(2)), np.int64(2)))
    assert y.shape == (4, 2)
    assert data_lib.few_shot(source, np.int64(2), np.int64(2)).num_examples == 4
    history = kb.fit_bit(tiny_model(), (images, labels), batch_size=np.int64(4), total_steps=np.int64(1),
                         num_examples=np.int64(8), verbose=0)
    assert history.rule.total_steps == 1


# --- 27: ViT patch multiples ------------------------------------------------------------

def test_patch_14_vit_trains_at_a_multiple_of_its_patch(capsys):
    model = tiny_vit(14)
    images, labels = images_labels(8)
    history = kb.fit_bit(model, (images, labels), (images, labels), batch_size=4, total_steps=1)
    assert history.rule.crop_size == 126 and history.rule.resize_size == 160
    assert "crop 128 rounded down to 126, a multiple of the model's patch size" in capsys.readouterr().out


def test_patch_hint_names_the_real_patch_size():
    with pytest.raises(ValueError, match=r"multiple of 14 \(e.g. 126 or 140 instead of 128\)"):
        tiny_vit(14)(np.zeros((1, 128, 128, 3), "float32"))


# --- 28: few-shot and small sets of images of different sizes ---------------------------

def mixed_size_dataset():
    rng = np.random.default_rng(0)

    def generate():
        for i in range(12):
            size = (8 + 4 * (i % 3), 16)
            yield rng.integers(0, 256, (*size, 3), dtype=np.uint8), np.int64(i % 2)

    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)))


def test_few_shot_of_a_dataset_of_unknown_size_and_mixed_image_sizes():
    ds = mixed_size_dataset()
    with pytest.raises(ValueError, match="num_examples="):
        kb.fit_bit(tiny_model(), ds, examples_per_class=2, image_size=16, verbose=0)
    history = kb.fit_bit(tiny_model(), ds, examples_per_class=2, num_examples=12, image_size=16,
                         batch_size=8, total_steps=1, verbose=0)
    assert history.rule.total_steps == 1


def test_a_set_smaller_than_the_batch_with_mixed_image_sizes():
    source = dataclasses_replace(data_lib.load_source(mixed_size_dataset()), num_examples=12)
    x, _ = first_batch(data_lib.train_pipeline(source, kb.hyperrule(12, 16, batch_size=16), 2))
    assert x.shape == (16, 128, 128, 3)


def dataclasses_replace(source, **changes):
    import dataclasses

    return dataclasses.replace(source, **changes)


def test_meta_pseudo_labels_crops_to_the_vits_patch_multiple():
    labeled, unlabeled = images_labels(8), images_labels(8, seed=1)[0]
    student, _ = kb.fit_meta_pseudo_labels(tiny_vit(14), tiny_vit(14), labeled, unlabeled, steps=1,
                                           batch_size=4, unlabeled_ratio=1, resolution=30)
    assert student.name == "vit_tiny"  # 30 is no multiple of 14: it ran at 28


def test_noisy_student_crops_to_the_vits_patch_multiple():
    labeled, unlabeled = images_labels(8), images_labels(8, seed=1)[0]
    _, records = kb.fit_noisy_student(tiny_vit(14), tiny_vit(14), labeled, unlabeled, steps=1, batch_size=4,
                                      unlabeled_ratio=1, randaugment=None, confidence_threshold=0.0,
                                      resolution=30, iterations=np.int64(1))
    assert len(records) == 1


def test_few_shot_with_one_hot_labels():
    images, labels = images_labels(12)
    source = data_lib.load_source((images, np.eye(2, dtype="float32")[labels]))
    picked = data_lib.few_shot(source, 3, 2, seed=1)
    classes = sorted(int(np.argmax(y)) for _, y in picked.dataset.as_numpy_iterator())
    assert picked.num_examples == 6 and classes == [0, 0, 0, 1, 1, 1]
