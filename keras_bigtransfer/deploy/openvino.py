"""OpenVINO IR (`.xml` graph and `.bin` weights beside it) through Keras'
`Model.export(format="openvino")` (OpenVINO's converter on the TensorFlow backend)."""

import os
import shutil

from keras_bigtransfer.deploy import input_signature
from keras_bigtransfer.weights.atomic import make_temp_directory


def export_openvino(model, path, shape):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    staging = make_temp_directory("." + os.path.basename(path) + ".staging-", directory)  # umask's modes
    try:
        staged = os.path.join(staging, os.path.basename(path))
        model.export(staged, format="openvino", verbose=False, input_signature=input_signature(shape))
        # The .bin first: a reader finding the new .xml finds its weights.
        os.replace(os.path.splitext(staged)[0] + ".bin", os.path.splitext(path)[0] + ".bin")
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
