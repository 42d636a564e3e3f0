"""The one image rule (layers/image_input.py, issue 29): every entry point that takes images
converts the same odd inputs the same way and refuses the same bad ones with the same message.

Entry points: a model's call, fit_bit's data path (training.data, NumPy and tf.data),
preprocessing.eval_transform and the CLI's `predict` on an image file the test writes."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_bigtransfer as kb
from keras_bigtransfer.models import base
from keras_bigtransfer.preprocessing import eval_transform, to_numpy
from keras_bigtransfer.training import data as data_lib
from keras_bigtransfer.training.semi_supervised.common import unlabeled_images
from tests.unit.test_cli_errors import run_cli

RULE = kb.hyperrule(8, 16, batch_size=2)


def _rgb():
    return np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)


def _rgba():
    rgb = _rgb()
    return np.concatenate([rgb, np.full_like(rgb[..., :1], 9)], axis=-1)


# name: (the odd batch, what the rule makes of it: the RGB batch, or None where it refuses it).
CASES = {
    "grayscale HxW": (_rgb()[..., 0], np.repeat(_rgb()[..., :1], 3, axis=-1)),
    "grayscale HxWx1": (_rgb()[..., :1], np.repeat(_rgb()[..., :1], 3, axis=-1)),
    "RGBA": (_rgba(), _rgb()),  # alpha dropped, as Pillow's convert("RGB")
    "wrong rank": (_rgb()[:, None], None),
    "float out of range": (_rgb().astype("float32"), _rgb().astype("float32")),  # taken, with a warning
    "int16": (_rgb().astype("int16"), None),
}


def _model():
    """A small model of the families' shape: the contract layer first, a head named "head"."""
    keras.utils.set_random_seed(0)
    inputs = base.image_inputs((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=4)(base.input_contract(inputs))
    x = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return kb.ImageModel(inputs, x, name="tiny")


def _pipeline(images, as_dataset):
    labels = np.arange(len(images)) % 2
    data = tf.data.Dataset.from_tensor_slices((images, labels)) if as_dataset else (images, labels)
    return data_lib.eval_pipeline(data_lib.load_source(data), RULE, 2, len(images))


def _entry_points(model):
    """name -> function of a batch returning what that entry point hands the network."""
    return {
        "model call": lambda x: to_numpy(model(x)),
        "fit_bit data (NumPy)": lambda x: next(iter(_pipeline(x, False)))[0].numpy(),
        # tf.data's elements are single images (a batched dataset is unbatched): a 5-D array is
        # a dataset of batches there, not a wrong rank.
        "fit_bit data (tf.data)": lambda x: next(iter(_pipeline(x, True)))[0].numpy() if x.ndim < 5 else None,
        "eval_transform": lambda x: eval_transform(x, 16),
    }


def _predict_line(model_file, image, path, capsys):
    Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image).save(path)
    assert run_cli("predict", model_file, path, "--top_k=2", "--image_size=16") == 0
    return capsys.readouterr().out.strip().splitlines()[-1].split(": ", 1)[1]


def _tail(message):
    """The message without the name of who raised it ("train_data takes ..." -> "takes ...")."""
    for marker in (" takes ", ": float images "):
        if marker in message:
            return marker + message.split(marker, 1)[1]
    raise AssertionError(f"not a message of the image rule: {message}")


@pytest.mark.parametrize("case", list(CASES))
def test_every_entry_point_applies_the_same_image_rule(case, tmp_path, capsys):
    odd, converted = CASES[case]
    model = _model()
    errors, warned = {}, {}
    for name, run in _entry_points(model).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                got = run(odd)
            except ValueError as e:
                errors[name] = _tail(str(e))
                continue
        warned[name] = sorted(_tail(str(w.message)) for w in caught if "float images range" in str(w.message))
        if got is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the converted floats warn again
                want = run(converted)
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{case}: {name}")
    if converted is None:  # refused by every entry point, with one message
        with pytest.raises(ValueError) as unlabeled:  # Noisy Student's and MPL's unlabeled images too
            unlabeled_images(odd)
        errors["unlabeled_data"] = _tail(str(unlabeled.value))
        assert set(errors) - {"unlabeled_data"} == {"model call", "fit_bit data (NumPy)", "eval_transform"} | (
            {"fit_bit data (tf.data)"} if odd.ndim < 5 else set()), errors
        assert len(set(errors.values())) == 1, errors
        return
    assert not errors, errors
    # The range warning: from every entry point where values are seen, with the same text.
    far = case == "float out of range"
    assert all(len(w) == (1 if far else 0) for w in warned.values()), warned
    assert len({tuple(w) for w in warned.values()}) == 1, warned

    # The CLI reads a file: the formats hold 8-bit grayscale and RGBA, not the other cases.
    if odd.dtype == np.uint8:
        model_file = tmp_path / "tiny.keras"
        model.save(model_file)
        assert (_predict_line(model_file, odd[0], tmp_path / "odd.png", capsys)
                == _predict_line(model_file, converted[0], tmp_path / "rgb.png", capsys))
