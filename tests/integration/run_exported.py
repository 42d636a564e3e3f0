"""Run exported models in their own runtime, in a process that imports neither
keras_bigtransfer nor TensorFlow (test_deploy.py runs this file as a script).

    python run_exported.py FORMAT INPUTS.npy OUT_DIR MODEL_FILE...

Writes OUT_DIR/<model file name>.npy with the outputs for INPUTS (N x H x W x 3, float32 in
[0, 1] or uint8), run 100 images at a time,
then prints the modules it had loaded that it must not have.
"""

import json
import os
import sys

import numpy as np

THREADS = 2
CHUNK = 100  # images per call


def _float(images):
    """uint8 images (0-255) become [0, 1], the package's convention."""
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def run_litert(path, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=THREADS)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_onnx(path, images):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def run_openvino(path, images):
    import openvino as ov

    # f32: the CPU plugin would otherwise run in bf16 on CPUs that have it.
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": THREADS})
    return compiled(images)[compiled.output(0)]


RUNNERS = {"litert": run_litert, "onnx": run_onnx, "openvino": run_openvino}


def main(argv):
    fmt, inputs, out_dir, files = argv[1], argv[2], argv[3], argv[4:]
    images = np.load(inputs)
    for path in files:
        outputs = np.concatenate([
            np.asarray(RUNNERS[fmt](path, _float(images[i:i + CHUNK])), dtype=np.float32)
            for i in range(0, len(images), CHUNK)])
        np.save(os.path.join(out_dir, os.path.basename(path) + ".npy"), outputs)
    forbidden = sorted(m for m in sys.modules if m.split(".")[0] in ("keras_bigtransfer", "tensorflow", "keras"))
    print(json.dumps({"forbidden_modules": forbidden}))


if __name__ == "__main__":
    main(sys.argv)
