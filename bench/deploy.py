"""Deployment formats against Keras: batch-1 latency, batch-16 throughput, file sizes.

    python bench/deploy.py                        # Lite0, EfficientNet-B0, BiT-M-R50x1, ViT-B/16 at 224
    python bench/deploy.py --only=Lite0 --repeats=5

For each model: Keras (TensorFlow backend, `predict_on_batch`: the compiled graph) in this
process, then the exported files, each runtime in its own subprocess that imports neither
TensorFlow nor keras_bigtransfer (this file run with --child): LiteRT float32 (ai-edge-litert,
XNNPACK), LiteRT int8 (full integer, calibrated on 64 random-crop photos; Lite0 and B0), ONNX
(onnxruntime CPU) and OpenVINO IR (CPU plugin, f32 inference precision). Every engine gets the
same thread count (--threads, default: the CPUs). Batch-1 latency: the median of --repeats
timed calls after warm-up; batch-16 throughput: 16 / the median batch time. Lite0 has its real
ImageNet weights (the pip package), the others random ones (speed and size do not depend on
the values; weights=None works offline). Results: stdout (markdown) and --out (JSON).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUBJECTS = {  # name: (constructor, kwargs, int8 too)
    "Lite0": ("EfficientNetLite0", {"weights": "efficientnet_lite0"}, True),
    "EfficientNet-B0": ("EfficientNetB0", {"weights": None}, True),
    "BiT-M-R50x1": ("BiT_M_R50x1", {"weights": None}, False),
    "ViT-B/16": ("ViT_B16", {"weights": None}, False),
}


def timed(call, repeats, warmup=2):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def speed(make_call, size, repeats, batch):
    """(batch-1 latency ms, batch-`batch` images/s) of make_call(batch_size) -> callable."""
    import numpy as np

    rng = np.random.default_rng(0)
    one = rng.uniform(0, 1, (1, size, size, 3)).astype("float32")
    many = rng.uniform(0, 1, (batch, size, size, 3)).astype("float32")
    latency = timed(make_call(one), repeats)
    per_batch = timed(make_call(many), max(3, repeats // 4))
    return 1000 * latency, batch / per_batch


# --- the runtime side: a subprocess with no TensorFlow --------------------------------------


def child(fmt, path, size, repeats, batch, threads):
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        def make_call(images):
            interpreter = Interpreter(model_path=path, num_threads=threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(images.shape))
            interpreter.allocate_tensors()

            def call():
                interpreter.set_tensor(index, images)
                interpreter.invoke()
                return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            return call
    elif fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def make_call(images):
            return lambda: session.run(None, {name: images})
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": threads})

        def make_call(images):
            request = compiled.create_infer_request()
            return lambda: request.infer({0: images})
    latency, throughput = speed(make_call, size, repeats, batch)
    assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras_bigtransfer")]
    print(json.dumps({"latency_ms": latency, "images_per_s": throughput}))


def run_child(fmt, path, args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", fmt, path, f"--size={args.size}",
                          f"--repeats={args.repeats}", f"--batch={args.batch}", f"--threads={args.threads}"],
                         capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{fmt} runtime failed on {path}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def file_size(path):
    size = os.path.getsize(path)
    if path.endswith(".xml"):
        size += os.path.getsize(path[:-4] + ".bin")
    return size


def calibration_images(count, size):
    """Random crops of scikit-image's colour photos, uint8."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [getattr(skimage.data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket", "cat")]
    crops = []
    for i in range(count):
        image = sources[i % len(sources)]
        side = int(rng.uniform(0.5, 1.0) * min(image.shape[:2]))
        top, left = rng.integers(0, image.shape[0] - side + 1), rng.integers(0, image.shape[1] - side + 1)
        crops.append(np.asarray(Image.fromarray(image[top:top + side, left:left + side]).resize((size, size))))
    return np.stack(crops)


def machine(threads):
    import tensorflow as tf

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for module in ("ai_edge_litert", "onnxruntime", "openvino", "tf2onnx"):
        try:
            from importlib.metadata import version

            versions.append(f"{module} {version(module.replace('_', '-'))}")
        except Exception:
            pass
    return (f"{cpu}, {os.cpu_count()} CPUs, {threads} threads per engine, TensorFlow {tf.__version__}, "
            f"Keras {__import__('keras').__version__}, {', '.join(versions)}, Python {platform.python_version()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20, help="timed batch-1 calls (batch calls: a quarter)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", default="", help="comma-separated substrings of subject names")
    parser.add_argument("--formats", default="keras,litert,int8,onnx,openvino",
                        help="comma-separated engines to measure (keras, litert, int8, onnx, openvino)")
    parser.add_argument("--out", default=os.path.join(HERE, "deploy_results.json"))
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.size, args.repeats, args.batch, args.threads)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.dirname(HERE))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras_bigtransfer as kb

    rows, workdir = [], tempfile.mkdtemp(prefix="bench_deploy_")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name, (constructor, kwargs, int8) in SUBJECTS.items():
        if args.only and not any(s.lower() in name.lower() for s in args.only.split(",")):
            continue
        model = getattr(kb, constructor)(input_shape=(args.size, args.size, 3), **kwargs)
        wanted = args.formats.split(",")
        if "keras" in wanted:
            latency, throughput = speed(lambda x: (lambda: model.predict_on_batch(x)), args.size, args.repeats,
                                        args.batch)
            rows.append({"model": name, "engine": "Keras (TF backend)", "latency_ms": latency,
                         "images_per_s": throughput, "file_mb": None, "export_s": None})
            print(rows[-1], flush=True)
        variants = [("litert", None), ("litert", "int8")] if int8 else [("litert", None)]
        for fmt, quantize in variants + [("onnx", None), ("openvino", None)]:
            if (quantize or fmt) not in wanted:
                continue
            stem = os.path.join(workdir, f"{constructor}_{quantize or 'float32'}")
            start = time.perf_counter()
            data = calibration_images(64, args.size) if quantize == "int8" else None
            path = kb.hub.export(model, stem, format=fmt, quantize=quantize, representative_data=data)
            export_s = time.perf_counter() - start
            measured = run_child(fmt, path, args)
            engine = {"litert": "LiteRT", "onnx": "ONNX Runtime", "openvino": "OpenVINO"}[fmt]
            rows.append({"model": name, "engine": f"{engine} {quantize or 'float32'}", **measured,
                         "file_mb": file_size(path) / 1e6, "export_s": export_s})
            print(rows[-1], flush=True)
    report = {"machine": machine(args.threads), "started": started,
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "size": args.size, "batch": args.batch, "repeats": args.repeats, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(render(report))


def render(report):
    lines = [f"Machine: {report['machine']}. {report['size']} px, {report['started']} to {report['finished']}.", "",
             f"| model | engine | batch-1 latency (ms) | batch-{report['batch']} img/s | vs Keras latency | file MB |",
             "|---|---|---|---|---|---|"]
    keras_latency = {}
    for row in report["rows"]:
        if row["engine"].startswith("Keras"):
            keras_latency[row["model"]] = row["latency_ms"]
        speedup = keras_latency.get(row["model"], float("nan")) / row["latency_ms"]
        size = "-" if row["file_mb"] is None else f"{row['file_mb']:.1f}"
        lines.append(f"| {row['model']} | {row['engine']} | {row['latency_ms']:.1f} | {row['images_per_s']:.1f} | "
                     f"{speedup:.2f}x | {size} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
