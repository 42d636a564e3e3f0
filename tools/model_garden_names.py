"""Write the variable names and shapes of the TF Model Garden's EfficientNet-B0 TF Hub export
(tests/data/model_garden_efficientnet_b0.json), which tests/families/test_published_modules.py
reads so that the import is checked against the real names without Model Garden installed.

Model Garden is not a dependency: unpack its wheel and put it on the path, e.g.

    pip download --no-deps tf-models-official==2.20.0 -d /tmp/mg && unzip -q /tmp/mg/*.whl -d /tmp/mgsrc
    PYTHONPATH=/tmp/mgsrc python tools/model_garden_names.py 2.20.0   # the version, for the record

It builds the model as `official/legacy/image_classification/efficientnet/tfhub_export.py`
does (the exporter of the `tensorflow/efficientnet/b*` TF2 modules), saves it as a SavedModel
and lists the variables `tf.saved_model.load` gives back (what `hub.load` reads).
"""

import json
import os
import sys
import tempfile

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "model_garden_efficientnet_b0.json")


def main(version=None, out=OUT):
    import tensorflow as tf
    import tf_keras
    from official.legacy.image_classification.efficientnet import efficientnet_model

    config = dict(efficientnet_model.MODEL_CONFIGS)["efficientnet-b0"]
    image_input = tf_keras.layers.Input(shape=(None, None, 3), name="image_input", dtype=tf.float32)
    model = tf_keras.Model(image_input, efficientnet_model.efficientnet(image_input * 255.0, config))
    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "classification"), include_optimizer=False)
        loaded = tf.saved_model.load(os.path.join(folder, "classification"))
        variables = {v.name.split(":")[0]: list(v.shape) for v in loaded.variables}
    record = {
        "source": "tf-models-official" + (f" {version}" if version else "")
        + ": official/legacy/image_classification/efficientnet (tfhub_export.py), efficientnet-b0,"
        " saved with tf_keras and read back with tf.saved_model.load",
        "variables": dict(sorted(variables.items())),
    }
    with open(out, "w") as f:  # one variable a line: small diffs when it is written again
        f.write('{"source": ' + json.dumps(record["source"]) + ',\n "variables": {\n')
        f.write(",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record["variables"].items()))
        f.write("\n }\n}\n")
    print(f"{len(variables)} variables -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
