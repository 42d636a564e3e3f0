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
    (np.zeros((1, 20, 20, 5), np.uint8), "got 5 channels"),  # RGBA is converted (test_image_rule.py)
    (np.zeros((0, 20, 3), np.uint8), "no pixels"),
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


# --- issue 26 items 8 and 12: one reading rule for image files -----------------------------


@pytest.fixture
def image_files(tmp_path):
    """The same gradient as 8-bit and 16-bit files, other modes, and broken files."""
    from PIL import Image

    gradient16 = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    gradient8 = np.round(gradient16 / 257.0).astype(np.uint8)
    files = {}
    for name, image in [("gray8.png", Image.fromarray(gradient8)), ("gray16.png", Image.fromarray(gradient16)),
                        ("gray16.tif", Image.fromarray(gradient16)), ("cmyk.jpg", Image.new("CMYK", (16, 16))),
                        ("la.png", Image.new("LA", (16, 16), (200, 10))),
                        ("float.tif", Image.fromarray(np.zeros((16, 16), np.float32)))]:
        files[name] = tmp_path / name
        image.save(files[name])
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    files["palette.png"] = tmp_path / "palette.png"
    palette.save(files["palette.png"], transparency=0)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise)
    files["cut.png"] = tmp_path / "cut.png"  # header intact, pixel data cut
    files["cut.png"].write_bytes(noise.read_bytes()[: 2 * noise.stat().st_size // 3])
    noise.unlink()
    files["text.png"] = tmp_path / "text.png"
    files["text.png"].write_text("not an image")
    return files, gradient8


def test_image_files_are_read_by_one_rule(image_files):
    import warnings

    from keras_bigtransfer.preprocessing import read_image_file

    files, gradient8 = image_files
    eight = read_image_file(files["gray8.png"])
    assert eight.shape == (16, 16, 3) and eight.dtype == np.uint8
    np.testing.assert_array_equal(eight[..., 0], gradient8)
    for name in ("gray16.png", "gray16.tif"):  # scaled from 65535, not saturated at 255
        assert np.abs(read_image_file(files[name]).astype(int) - eight).max() <= 1, name
    assert read_image_file(files["cmyk.jpg"]).shape == (16, 16, 3)
    assert (read_image_file(files["la.png"]) == 200).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning on a palette image with transparency
        assert tuple(read_image_file(files["palette.png"])[0, 0]) == (10, 20, 30)
    for name, message in [("cut.png", "is a damaged image"), ("text.png", "is not an image file"),
                          ("float.tif", "is a 32-bit float image")]:
        with pytest.raises(ValueError, match=rf"predict: .*{name} {message}") as caught:
            read_image_file(files[name], what="predict")
        assert "\n" not in str(caught.value)


def test_every_reader_of_image_files_follows_the_rule(image_files, tmp_path):
    """Calibration directories, class folders and the CLI's predict read 16-bit files scaled, and
    name a broken file (the calibration reader saturated 16-bit images: mean 0.998 for 0.5)."""
    import shutil

    from keras_bigtransfer import cli
    from keras_bigtransfer.deploy.calibration import load_representative_data
    from keras_bigtransfer.training import data as data_lib

    files, gradient8 = image_files
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    shutil.copy(files["gray16.png"], calibration)
    with pytest.warns(UserWarning, match="1 calibration images"):
        images = load_representative_data(str(calibration), (16, 16, 3))
    assert abs(float(images.mean()) - gradient8.mean() / 255) < 0.01
    shutil.copy(files["cut.png"], calibration)
    with pytest.raises(ValueError, match=r"representative_data: .*cut\.png is a damaged image"):
        load_representative_data(str(calibration), (16, 16, 3))

    folders = tmp_path / "folders"
    for label in ("a", "b"):
        (folders / label).mkdir(parents=True)
        shutil.copy(files["gray16.png"], folders / label)
    source = data_lib.load_source(str(folders))
    image, _ = next(iter(source.dataset))
    assert abs(float(np.mean(image)) - gradient8.mean()) < 1.0

    assert abs(float(cli._read_image(str(files["gray16.png"])).mean()) - gradient8.mean()) < 1.0
    with pytest.raises(ValueError, match=r"predict: .*cut\.png is a damaged image"):
        cli._read_image(str(files["cut.png"]))
