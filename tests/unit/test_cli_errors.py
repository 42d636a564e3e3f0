"""The command line's input checks and error reporting, run in-process (fast): every
user error is one `keras-bigtransfer: error: ...` line and a non-zero status, and the
outputs are checked before anything is loaded, downloaded or trained."""

import os

import numpy as np
import pytest

import keras
import keras_bigtransfer as kb
from keras_bigtransfer import cli, errors, hub
from keras_bigtransfer.training import data as data_lib


def run_cli(*args):
    """Parse and run like the entry point does; return the exit status."""
    cli.FLAGS.unparse_flags()
    try:
        cli.main(cli.parse_flags(["keras-bigtransfer", *map(str, args)]))
        return 0
    except SystemExit as e:
        return e.code
    finally:
        cli.FLAGS.unparse_flags()


def error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("keras-bigtransfer: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Loading, reading data or training fails the test: checks must come first."""

    def fail(*args, **kwargs):
        raise AssertionError("loaded, read or trained before the arguments were checked")

    monkeypatch.setattr(hub, "load", fail)
    monkeypatch.setattr(kb, "fit_bit", fail)
    monkeypatch.setattr(data_lib, "load_source", fail)


@pytest.mark.parametrize("args, expected", [
    (("list", "--family=nope"), "--family=nope"),
    (("predict", "m", "x.png", "--top_k=0"), "--top_k=0"),
    (("predict", "m", "x.png", "--top_k=abc"), "--top_k=abc"),
    (("predict", "m", "x.png", "--image_size=-3"), "--image_size=-3"),
    (("fit", "m", "d", "--out=o", "--base_lr=nan"), "--base_lr"),
    (("fit", "m", "d", "--out=o", "--base_lr=-1"), "--base_lr"),
    (("fit", "m", "d", "--out=o", "--batch_size=0"), "--batch_size=0"),
    (("fit", "m", "d", "--out=o", "--no_such_flag=1"), "no_such_flag"),
    (("list", "--top_k=3"), "list does not take --top_k"),
    (("download",), "download expects 1 argument"),
    (("frobnicate",), "unknown command"),
])
def test_bad_arguments_are_one_line_and_status_2(args, expected, capsys, no_work):
    assert run_cli(*args) == 2
    assert expected in error_line(capsys)


@pytest.mark.parametrize("error", [
    errors.WeightsError("a.npz: array 'conv/kernel' is (3, 3) but the model wants (3, 3, 3, 64)"),
    errors.ChecksumError("bit.npz: sha256 abc is not the pinned def"),
    errors.OfflineError("KERAS_BIGTRANSFER_OFFLINE is set and bit.npz is not in the cache.\nPlace it in /x"),
    errors.DownloadError("https://example.invalid/bit.npz: HTTP 503 after 5 tries"),
    FileNotFoundError(2, "No such file or directory", "missing.npz"),
    PermissionError(13, "Permission denied", "/root/x"),
    ValueError("bad input"),
])
def test_package_errors_are_one_line_and_debug_shows_the_traceback(error, capsys, monkeypatch):
    def fail(tag):
        raise error

    monkeypatch.setattr(hub, "resolve", fail)
    assert run_cli("download", "tag") == 1
    line = error_line(capsys)
    assert line.startswith("keras-bigtransfer: error: download: ")
    assert str(error).splitlines()[0] in line
    with pytest.raises(type(error)):
        run_cli("download", "tag", "--debug")
    monkeypatch.setenv("KERAS_BIGTRANSFER_DEBUG", "1")
    with pytest.raises(type(error)):
        run_cli("download", "tag")


def test_predict_checks_images_and_labels_before_loading(tmp_path, capsys, no_work):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert run_cli("predict", "model.keras", photo, text) == 1
    line = error_line(capsys)
    assert str(text) in line and "not an image" in line and "BytesIO" not in line
    assert run_cli("predict", "model.keras", tmp_path / "gone.png") == 1
    assert "gone.png" in error_line(capsys)
    empty = tmp_path / "labels.txt"
    empty.write_text("\n\n")
    assert run_cli("predict", "model.keras", photo, f"--labels={empty}") == 1
    assert "empty" in error_line(capsys)


def _scorer(num_classes, red_class, blue_class, path):
    """A model whose logits are the image's mean colour: red votes for one class, blue for another."""
    inputs = keras.Input((None, None, 3))
    head = keras.layers.Dense(num_classes, name="head")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel = np.zeros((3, num_classes), np.float32)
    kernel[0, red_class] = kernel[2, blue_class] = 20.0
    head.kernel.assign(kernel)
    model.save(path)
    return model


def _wide_photo(path):
    """300 x 100: red left and right thirds, a blue centre. Squashed it is mostly red."""
    from PIL import Image

    image = np.zeros((100, 300, 3), np.uint8)
    image[:, :100, 0] = image[:, 200:, 0] = 255
    image[:, 100:200, 2] = 255
    Image.fromarray(image).save(path)
    return image


def test_predict_uses_the_api_view_and_names_imagenet_classes(tmp_path, capsys):
    from keras_bigtransfer.datasets import decode_predictions
    from keras_bigtransfer.preprocessing import center_crop

    photo = tmp_path / "wide.png"
    image = _wide_photo(photo)
    for num_classes, blue, name in ((1000, 657, "missile"), (21843, 9514, "projectile, missile")):
        model = _scorer(num_classes, 540, blue, tmp_path / f"head{num_classes}.keras")
        assert run_cli("predict", tmp_path / f"head{num_classes}.keras", photo, "--top_k=2",
                       "--image_size=32") == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith(f"{photo}: {blue} {name} (")
        api = decode_predictions(model(center_crop(image, 32)[None]), top=1)[0][0]
        assert api[0] == blue and api[1] == name


def test_predict_labels_must_name_every_class(tmp_path, capsys):
    photo = tmp_path / "wide.png"
    _wide_photo(photo)
    _scorer(4, 0, 1, tmp_path / "four.keras")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\ngreen\n")
    assert run_cli("predict", tmp_path / "four.keras", photo, f"--labels={labels}") == 1
    line = error_line(capsys)
    assert "names 3 classes but" in line and "has 4" in line
    labels.write_text("red\nblue\ngreen\ngrey\n\n")  # trailing blank lines do not count
    assert run_cli("predict", tmp_path / "four.keras", photo, f"--labels={labels}", "--image_size=16") == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"{photo}: blue (")


def test_outputs_are_checked_before_loading_or_training(tmp_path, capsys, no_work):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "exists.keras").write_text("x")
    (tmp_path / "exists.onnx").write_text("x")
    (tmp_path / "dir.keras").mkdir()
    (tmp_path / "dir.onnx").mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "new.tar.gz").write_text("not ours")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("x")
    (run / "notes.txt").write_text("mine")
    effnet = hub.list_models("efficientnet")[0].tag
    cases = [
        (("convert", "src", tmp_path / "out.txt"), 2, ".keras or .npz"),
        (("convert", "src", tmp_path / "exists.keras"), 1, "--overwrite"),
        (("convert", "src", tmp_path / "dir.keras"), 1, "is a directory"),
        (("convert", "src", tmp_path / "a_file" / "out.keras"), 1, "is a file, not a directory"),
        (("convert", effnet, tmp_path / "out.npz"), 2, "BiT"),
        (("export", "src", foreign), 1, "not an earlier keras_bigtransfer export"),
        (("export", "src", tmp_path / "new", "--archive"), 1, "new.tar.gz exists"),
        (("export", "src", tmp_path / "a_file" / "sub"), 1, "is a file, not a directory"),
        (("export", "src", tmp_path / "exists.onnx", "--format=onnx"), 1, "--overwrite"),
        (("export", "src", tmp_path / "dir.onnx", "--format=onnx"), 1, "is a directory"),
        (("export", "src", tmp_path / "a_file" / "m.onnx", "--format=onnx"), 1, "is a file, not a directory"),
        (("fit", "EfficientNetLite0", "data", f"--out={tmp_path / 'out.keras'}"), 2, "--out is a directory"),
        (("fit", "EfficientNetLite0", "data", f"--out={tmp_path / 'a_file'}"), 1, "not a directory"),
        (("fit", "EfficientNetLite0", "data", f"--out={tmp_path / 'a_file' / 'sub'}"), 1, "not a directory"),
        (("fit", "EfficientNetLite0", "data", f"--out={run}"), 1, "--overwrite"),
        (("fit", "NoSuchModel", "data", f"--out={tmp_path / 'new_run'}"), 1, "neither a constructor"),
    ]
    for args, status, expected in cases:
        assert run_cli(*args) == status, args
        line = error_line(capsys)
        assert expected in line, args
        assert f"error: {args[0]}: {args[0]}:" not in line, line  # issue 26 item 16: no doubled prefix
    assert (foreign / "notes.txt").exists() and (tmp_path / "exists.keras").read_text() == "x"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert run_cli("fit", "EfficientNetLite0", "data", f"--out={locked / 'run'}") == 1
        assert "not writable" in error_line(capsys)


def test_convert_overwrite_replaces_an_existing_file(tmp_path, capsys):
    _scorer(3, 0, 1, tmp_path / "src.keras")
    dst = tmp_path / "dst.keras"
    dst.write_text("old")
    assert run_cli("convert", tmp_path / "src.keras", dst) == 1
    assert "--overwrite" in error_line(capsys)
    assert run_cli("convert", tmp_path / "src.keras", dst, "--overwrite") == 0
    assert keras.saving.load_model(dst).output.shape == (None, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.keras", "src.keras"]  # no temporary left


def test_fit_offline_does_not_download_a_tfds_dataset(tmp_path, capsys, monkeypatch):
    import tensorflow_datasets as tfds

    def no_download(*args, **kwargs):
        raise AssertionError("offline mode tried to download")

    def no_training(*args, **kwargs):
        raise AssertionError("trained without data")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    monkeypatch.setattr(kb, "fit_bit", no_training)
    status = run_cli("fit", "EfficientNetLite0", "mnist:train", f"--out={tmp_path / 'run'}",
                     f"--data_dir={tmp_path / 'tfds'}")  # conftest sets KERAS_BIGTRANSFER_OFFLINE=1
    assert status == 1
    assert "KERAS_BIGTRANSFER_OFFLINE" in error_line(capsys)


# --- issue 25: help, list, download suggestions, fit --resolution ------------------------------

@pytest.mark.parametrize("args", [("--help",), ("-h",), ("help",)])
def test_help_lists_every_command_and_its_flags(args, capsys):
    """Before: --help printed absl's empty usage and exited 1; `help` was an unknown command."""
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    for command, (usage, _, names) in cli.COMMANDS.items():
        assert f"keras-bigtransfer {command}" in out
        assert all(f"--{name}:" in out for name in names), command
    assert "--resolution: fit: the training resolution" in out


def test_help_command_describes_one_command(capsys):
    assert run_cli("help", "fit") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-bigtransfer fit") and "--resolution" in out and "--top_k" not in out
    assert run_cli("help", "nope") == 2
    assert "unknown command 'nope'" in error_line(capsys)


def test_list_fits_100_columns_and_wide_shows_every_column(capsys):
    assert run_cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= cli.LIST_WIDTH
    tags = {line.split()[0] for line in lines[1:]}
    assert tags == {e.tag for e in hub.list_models()}  # tags whole, never cut
    assert run_cli("list", "--wide") == 0
    wide = capsys.readouterr().out.splitlines()
    assert wide[0].split()[:2] == ["tag", "constructor"] and "ILSVRC-2012 + JFT-300M unlabeled (Noisy Student)" in "\n".join(wide)


def test_download_of_a_typo_names_the_closest_tags(capsys):
    assert run_cli("download", "bit_m_r50x1_ilsvrc201") == 1
    assert "did you mean 'bit_m_r50x1_ilsvrc2012'" in error_line(capsys)


def test_fit_resolution_reaches_fit_bit_and_image_size_is_refused(tmp_path, capsys, monkeypatch):
    """Before: --image_size, documented as the training resolution, fed fit_bit's image_size=
    (the rule's dataset-size input), and resolution= was out of reach."""
    _scorer(3, 0, 1, tmp_path / "m.keras")
    seen = {}

    def record(model, data, *args, **kwargs):
        seen.update(kwargs)
        raise ValueError("recorded")

    monkeypatch.setattr(kb, "fit_bit", record)
    out = f"--out={tmp_path / 'run'}"
    data = _class_folders(tmp_path / "data")
    assert run_cli("fit", tmp_path / "m.keras", data, out, "--resolution=64") == 1
    assert seen["resolution"] == 64 and "image_size" not in seen
    capsys.readouterr()
    assert run_cli("fit", tmp_path / "m.keras", data, out, "--image_size=64") == 2
    assert "--resolution" in error_line(capsys)


def test_fit_on_a_backend_without_a_saved_model_route_keeps_the_trained_model(tmp_path, capsys, monkeypatch):
    """PyTorch has no SavedModel route: fit writes model.keras and history.json and says why
    saved_model/ is missing, instead of failing after the training (issue 25, item 7)."""
    from types import SimpleNamespace

    _scorer(3, 0, 1, tmp_path / "m.keras")
    monkeypatch.setattr(kb, "fit_bit", lambda *a, **k: SimpleNamespace(rule=kb.hyperrule(10, 32), history={}))
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    run = tmp_path / "run"
    assert run_cli("fit", tmp_path / "m.keras", _class_folders(tmp_path / "data"), f"--out={run}") == 0
    assert sorted(os.listdir(run)) == ["history.json", "model.keras"]
    assert "saved_model/ not written" in capsys.readouterr().err


def _class_folders(root, count=4):
    """Two class folders of random (unlearnable) 16x16 PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("red", "blue"):
        (root / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_a_diverging_fit_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    """Issue 26 item 5: `fit --base_lr=1e30` exited 0 and wrote NaN weights as a model."""
    from tests.toys import tiny_model

    tiny_model().save(tmp_path / "m.keras")
    data = _class_folders(tmp_path / "data")
    out = tmp_path / "run"
    assert run_cli("fit", tmp_path / "m.keras", data, f"--out={out}", "--base_lr=1e30", "--total_steps=4",
                   "--batch_size=4") == 1
    line = error_line(capsys)
    assert "fit: fit_bit: the loss became" in line and "diverged" in line and "step" in line, line
    assert not out.exists() or not os.listdir(out)


def test_flags_that_would_do_nothing_are_refused(tmp_path, capsys, no_work):
    """Issue 26 item 15: `export --archive` with LiteRT and `fit --num_classes` with a .keras MODEL
    were silently ignored (and `export --image_size` with a SavedModel)."""
    (tmp_path / "m.keras").write_text("x")
    cases = [
        (("export", "src", tmp_path / "m.tflite", "--format=litert", "--archive"), "--archive"),
        (("export", "src", tmp_path / "saved", "--image_size=64"), "--image_size"),
        (("fit", tmp_path / "m.keras", "data", f"--out={tmp_path / 'run'}", "--num_classes=3"), "--num_classes"),
        (("fit", tmp_path / "m.keras", tmp_path, f"--out={tmp_path / 'run'}", f"--data_dir={tmp_path}"),
         "--data_dir"),
    ]
    for args, expected in cases:
        assert run_cli(*args) == 2, args
        assert expected in error_line(capsys), args
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_fit_overwrite_reaches_fit_bit(tmp_path, capsys, monkeypatch):
    """Issue 26 item 15: `fit --overwrite` was not passed on, so the remedy a finished
    checkpoint_dir's error suggests could not be applied from the CLI."""
    from tests.toys import tiny_model

    tiny_model().save(tmp_path / "m.keras")
    data = _class_folders(tmp_path / "data")
    seen = {}

    def fit_bit(model, train_data, *args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(kb, "fit_bit", fit_bit)
    for flag, expected in (("--overwrite", True), ("--nooverwrite", False)):
        assert run_cli("fit", tmp_path / "m.keras", data, f"--out={tmp_path / 'run'}", "--checkpoint_dir="
                       f"{tmp_path / 'ckpt'}", flag) == 1
        assert "stopped by the test" in error_line(capsys) and seen["overwrite"] is expected


def test_fit_takes_timm_names(tmp_path, capsys, monkeypatch):
    """Issue 25: a timm name works wherever a constructor name does; `fit` refused
    `tf_efficientnet_lite0` as "neither a constructor nor a catalogue tag"."""
    from keras_bigtransfer.models import registry

    seen = []

    def create_model(name, **kwargs):
        seen.append((name, kwargs))
        raise ValueError("stopped by the test")

    monkeypatch.setattr(registry, "create_model", create_model)
    data = _class_folders(tmp_path / "data")
    assert run_cli("fit", "tf_efficientnet_lite0", data, f"--out={tmp_path / 'run'}", "--num_classes=2") == 1
    assert "stopped by the test" in error_line(capsys)
    assert seen == [("tf_efficientnet_lite0", {"num_classes": 2})]


def test_the_command_prints_no_tensorflow_start_up_lines():
    """Issue 25 item 5: TensorFlow's C++ start-up lines (oneDNN, CUDA probing), written before
    its logging starts, came before every command's own output on the TensorFlow backend."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "keras-bigtransfer")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    result = subprocess.run([script, "list", "--family=bit"], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bit_m_r50x1" in result.stdout
    assert result.stderr == "", result.stderr
