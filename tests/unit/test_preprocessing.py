"""The one evaluation transform (API and CLI): resize keeping the aspect, centre crop."""

import numpy as np
import pytest

from keras_bigtransfer.preprocessing import center_crop, eval_transform


def wide_photo():
    """300 x 100: red left and right thirds, a blue centre square."""
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, :100, 0] = image[:, 200:, 0] = 255
    image[:, 100:200, 2] = 255
    return image


def test_centre_crop_keeps_the_aspect_ratio_and_crops_the_middle():
    out = eval_transform(wide_photo(), 32, crop_pct=1.0)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    # Squashing the whole photo to 32x32 would keep the red thirds (red mean 2/3); the crop
    # sees the blue centre (the antialiasing filter blurs only its outermost columns).
    assert out[..., 0].mean() < 0.05 and out[..., 2].mean() > 0.95
    # At 0.875 the crop is 7/8 of the resized shorter side: only blue.
    out = eval_transform(wide_photo(), 32)
    assert out[..., 0].max() < 0.01 and out[..., 2].min() > 0.99


def test_batches_lists_and_non_square_targets(rng):
    batch = rng.random((2, 40, 50, 3), dtype=np.float32)
    assert eval_transform(batch, 16).shape == (2, 16, 16, 3)
    listed = eval_transform([wide_photo(), rng.random((64, 48, 3), dtype=np.float32)], (24, 16))
    assert listed.shape == (2, 24, 16, 3)
    np.testing.assert_allclose(eval_transform(batch, 16)[1], eval_transform(batch[1], 16), atol=1e-6)
    out = eval_transform(rng.random((30, 30, 3), dtype=np.float32), 16, interpolation="bicubic")
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_center_crop_is_the_bicubic_eval_transform(rng):
    photo = (rng.random((48, 70, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(center_crop(photo, 24), eval_transform(photo, 24, interpolation="bicubic"))
    gray = eval_transform(photo[..., 0], 24)
    assert gray.shape == (24, 24, 3) and np.array_equal(gray[..., 0], gray[..., 2])


def test_a_grayscale_batch_is_a_batch(rng):
    """(N, H, W), the arrays fit_bit trains on, is N images, not one (H=N, W=H, C=W) image."""
    gray = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    views = eval_transform(gray, 24)
    assert views.shape == (5, 24, 24, 3)
    np.testing.assert_array_equal(views[2], eval_transform(gray[2], 24))
    np.testing.assert_array_equal(eval_transform(gray[..., None], 24), views)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((20, 20, 3), np.int32), "dtype int32"),
    (np.zeros((20, 20, 4), np.uint8), r"image\[\.\.\., :3\]"),
    (np.zeros((0, 20, 3), np.uint8), "empty"),
])
def test_images_outside_the_input_rule_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        eval_transform(bad, 16)


@pytest.mark.parametrize("kwargs, match", [
    ({"crop_pct": 0.0}, "crop_pct"), ({"crop_pct": 1.5}, "crop_pct"),
    ({"interpolation": "cubic"}, "interpolation"), ({"image_size": 0}, "image_size"),
])
def test_bad_arguments_are_refused(kwargs, match):
    kwargs = {"image_size": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        eval_transform(wide_photo(), **kwargs)
