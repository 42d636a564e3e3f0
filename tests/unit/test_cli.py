"""The command line, run as users run it: a subprocess of the installed entry point."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_bigtransfer.models.bit import convert as bit_convert
from keras_bigtransfer.models.bit.model import ResNetV2


def cli(*args, check=True):
    exe = shutil.which("keras-bigtransfer", path=os.path.dirname(sys.executable))
    command = [exe] if exe else [sys.executable, "-m", "keras_bigtransfer.cli"]
    result = subprocess.run(command + list(args), capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_list_and_per_command_help():
    out = cli("list", "--family", "bit", "--wide").stdout
    assert "bit_m_r101x3_ilsvrc2012" in out and "BiT_M_R101x3" in out
    for command in ("list", "download", "convert", "export", "predict", "fit"):
        assert f"usage: keras-bigtransfer {command}" in cli(command, "--help").stdout


def test_bad_input_is_a_message_not_a_traceback():
    result = cli("download", "bit_m_r999x9", check=False)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("keras-bigtransfer: error: download: ") and "bit_m_r999x9" in line
    assert "Traceback" not in result.stderr
    result = cli("list", "--family=nope", check=False)  # absl parses flags before main
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("keras-bigtransfer: error: flag --family=nope")
    assert cli("frobnicate", check=False).returncode == 2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = ResNetV2(50, 1, num_classes=4)
    model.get_layer("head").kernel.assign(np.random.default_rng(0).normal(0, 0.1, (2048, 4)).astype("float32"))
    return str(bit_convert.save_npz(model, tmp_path_factory.mktemp("cli") / "BiT-M-R50x1.npz"))


def test_convert_export_predict(checkpoint, tmp_path):
    import keras
    import skimage.data
    from PIL import Image

    from keras_bigtransfer.preprocessing import center_crop

    keras_file = str(tmp_path / "bit.keras")
    cli("convert", checkpoint, keras_file)
    converted = keras.saving.load_model(keras_file)
    assert converted.output.shape == (None, 4)

    done = cli("export", checkpoint, str(tmp_path / "exported"), "--signature=classification", "--archive")
    assert os.path.isdir(tmp_path / "exported") and os.path.isfile(str(tmp_path / "exported") + ".tar.gz")
    # One line of its own, and none of TensorFlow's Python INFO logs (there were a dozen).
    exported = str(tmp_path / "exported")
    assert done.stdout.splitlines() == [f"export: wrote a TF Hub SavedModel (classification) to {exported} "
                                        f"and its archive to {exported}.tar.gz"]
    assert "Assets written" not in done.stderr and "INFO" not in done.stderr, done.stderr

    photo = str(tmp_path / "chelsea.png")
    Image.fromarray(skimage.data.chelsea()).save(photo)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\ncup\nrocket\n")
    out = cli("predict", keras_file, photo, "--top_k=2", "--image_size=64", f"--labels={labels}").stdout
    line = out.strip().splitlines()[-1]
    assert line.startswith(photo + ": ") and line.count("(") == 2
    image = center_crop(skimage.data.chelsea(), 64)[None]  # the API's view of the photo
    best = ["cat", "dog", "cup", "rocket"][int(np.argmax(converted(image)))]
    assert line.split(": ")[1].startswith(best)


def test_predict_with_a_foreign_saved_model_whose_signature_returns_a_dict(tmp_path):
    import tensorflow as tf
    from PIL import Image

    # Not our layout and not callable: hub.load wraps its serving_default in a TFSMLayer,
    # which returns the signature's dict. Class 2 wins by a mile for any image.
    class Foreign(tf.Module):
        def __init__(self):
            super().__init__()
            self.bias = tf.Variable([0.0, 1.0, 9.0])

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def serve(self, images):
            return {"logits": tf.reduce_mean(images, axis=[1, 2]) + self.bias}

    module = Foreign()
    path = str(tmp_path / "foreign")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    photo = str(tmp_path / "grey.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(photo)
    line = cli("predict", path, photo, "--top_k=1", "--image_size=32").stdout.strip().splitlines()[-1]
    assert line.startswith(photo + ": 2 (")


def test_fit_from_a_directory(tmp_path):
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    for label, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(6):
            image = rng.integers(0, 80, (20, 20, 3)).astype(np.uint8)
            image[..., channel] += 150
            Image.fromarray(image).save(tmp_path / "data" / label / f"{i}.png")
    out = tmp_path / "run"
    cli("fit", "EfficientNetLite0", str(tmp_path / "data"), f"--out={out}", "--total_steps=2",
        "--batch_size=4", f"--validation_data={tmp_path / 'data'}")
    history = json.loads((out / "history.json").read_text())
    assert history["rule"]["total_steps"] == 2 and len(history["history"]["loss"]) == 2
    assert (out / "model.keras").exists() and (out / "saved_model" / "saved_model.pb").exists()
    # The class-folder names stay with the model: predict prints them, not "0 (0.51)".
    line = cli("predict", str(out / "model.keras"), str(tmp_path / "data" / "red" / "0.png"),
               "--top_k=2").stdout.strip().splitlines()[-1]
    assert re.search(r": (red|blue) \(0\.\d+\); (red|blue) \(", line), line


def xdist_group(item):
    """pytest-xdist group (tests/conftest.py): each test may run on either worker (each starts its
    own CLI processes; only test_convert_export_predict uses the module's checkpoint)."""
    return item.nodeid
