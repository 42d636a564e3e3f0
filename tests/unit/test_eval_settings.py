"""Evaluation settings as data: every catalogue entry carries timm's crop_pct, interpolation,
mean and std (input size: resolution); `preprocessing.eval_transform(images, tag_or_model)`
and the CLI's predict use them."""

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer import preprocessing
from keras_bigtransfer.weights import catalogue


def test_every_entry_carries_its_evaluation_settings():
    for e in catalogue.list_models():
        assert 0.5 < e.crop_pct <= 1.0, e.tag
        assert e.interpolation in ("bilinear", "bicubic"), e.tag
        assert len(e.mean) == 3 and len(e.std) == 3 and all(s > 0 for s in e.std), e.tag


@pytest.mark.parametrize("tag,resolution,crop_pct,interpolation", [
    ("bit_m_r50x1_ilsvrc2012", 448, 1.0, "bilinear"),  # BiT ILSVRC-2012 fine-tunes
    ("bit_m_r152x4_ilsvrc2012", 480, 1.0, "bilinear"),
    ("bit_m_r50x1_distilled_224", 224, 0.875, "bicubic"),  # distilled BiT
    ("vit_b16_augreg_in21k_ft_in1k", 224, 0.9, "bicubic"),  # ViT
    ("efficientnet_b0_ns", 224, 0.875, "bicubic"),  # TF EfficientNet: res / (res + 32)
    ("efficientnet_b7_ns", 600, 0.949, "bicubic"),
    ("efficientnet_l2_ns", 800, 0.96, "bicubic"),
    ("efficientnet_l2_ns_475", 475, 0.936, "bicubic"),
    ("hf-hub:timm/resnetv2_50x1_bit.goog_in21k_ft_in1k", 448, 1.0, "bilinear"),
    ("hf-hub:timm/tf_efficientnet_lite0.in1k", 224, 0.875, "bicubic"),
])
def test_published_settings(tag, resolution, crop_pct, interpolation):
    assert preprocessing.eval_settings(tag) == (resolution, crop_pct, interpolation)


def test_eval_transform_by_tag_entry_and_model_equals_the_explicit_view(rng):
    photo = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    expected = preprocessing.eval_transform(photo, 448, crop_pct=1.0, interpolation="bilinear")
    np.testing.assert_array_equal(preprocessing.eval_transform(photo, "bit_m_r50x1_ilsvrc2012"), expected)
    np.testing.assert_array_equal(
        preprocessing.eval_transform(photo, catalogue.get("bit_m_r50x1_ilsvrc2012")), expected)
    # An explicit setting overrides the source's.
    np.testing.assert_array_equal(
        preprocessing.eval_transform(photo, "bit_m_r50x1_ilsvrc2012", interpolation="bicubic"),
        preprocessing.eval_transform(photo, 448, crop_pct=1.0, interpolation="bicubic"))
    # A model: its fixed size, the settings of its catalogue entry (name and size).
    model = kb.EfficientNetB0(weights=None, input_shape=(224, 224, 3))
    assert preprocessing.eval_settings(model) == ((224, 224), 0.875, "bicubic")
    assert preprocessing.eval_transform(photo, model).shape == (224, 224, 3)
    # The integer form keeps its defaults.
    assert preprocessing.eval_transform(photo, 32).shape == (32, 32, 3)


def test_catalogue_settings_equal_timms_pretrained_cfgs():
    """tools/catalogue_timm.py --check: the JSON says what the installed timm's cfgs say."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "catalogue_timm.py")
    spec = importlib.util.spec_from_file_location("catalogue_timm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(check=True) == 0


def test_predict_uses_the_entrys_settings(monkeypatch, tmp_path, rng):
    """The CLI's predict takes the catalogue's view: 448 px, crop 1.0, bilinear for a BiT fine-tune."""
    from keras_bigtransfer import cli, hub

    photo = tmp_path / "p.png"
    keras.utils.save_img(photo, (rng.random((40, 50, 3)) * 255).astype(np.uint8))
    seen = []
    monkeypatch.setattr(hub, "load", lambda source: (lambda x: np.zeros((1, 3), np.float32)))
    monkeypatch.setattr(preprocessing, "eval_transform",
                        lambda image, size, crop_pct, interpolation: seen.append((size, crop_pct, interpolation))
                        or np.zeros((8, 8, 3), np.float32))
    cli.FLAGS(["keras-bigtransfer"])
    cli.cmd_predict(["bit_m_r50x1_ilsvrc2012", str(photo)])
    assert seen == [(448, 1.0, "bilinear")]
