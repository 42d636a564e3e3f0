"""A new user's first minutes, in one fresh process (run.py starts it once per backend and repeat).

    KERAS_BACKEND=jax python bench/first_steps.py WEIGHTS --spawned=$(date +%s.%N)

From the moment the parent started this process: `import keras_bigtransfer`, build
EfficientNet-Lite0 from WEIGHTS (a local checkpoint file, 1000 classes), `model.predict` on one
224 px image (the time to the first prediction), then `fit_bit` on a fresh 10-class Lite0 from
the same file for `--steps` steps at `--batch` and `--size` px on random uint8 images (issue 27
item 3's measure). torch is not imported (a TensorFlow or JAX user does not import it), and no
compilation cache is set up here beyond what the package and the environment do; the JSON names
`JAX_COMPILATION_CACHE_DIR` as found. Prints one JSON line.
"""

import time

_START, _START_PERF = time.time(), time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="a local EfficientNet-Lite0 checkpoint (any format the constructor reads)")
    parser.add_argument("--spawned", type=float, default=_START, help="time.time() when the parent started us")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--predict_size", type=int, default=224)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import numpy as np

    import keras_bigtransfer as kb

    imported = time.perf_counter()
    model = kb.EfficientNetLite0(weights=args.weights)
    built = time.perf_counter()
    image = np.random.default_rng(0).random((1, args.predict_size, args.predict_size, 3), dtype=np.float32)
    model.predict(image, verbose=0)
    predicted = time.perf_counter()

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (args.batch * 4, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images))
    fresh = kb.EfficientNetLite0(weights=args.weights, num_classes=10)
    fit_start = time.perf_counter()
    kb.fit_bit(fresh, (images, labels), batch_size=args.batch, total_steps=args.steps, resolution=args.size,
               verbose=0)
    fit_end = time.perf_counter()

    import keras

    spawned = _START_PERF - (_START - args.spawned)  # on the perf_counter clock
    print(json.dumps({
        "backend": keras.backend.backend(),
        "python_start_s": _START - args.spawned,
        "import_s": imported - started,
        "build_s": built - imported,
        "first_prediction_s": predicted - built,
        "to_first_prediction_s": predicted - spawned,
        "fit_bit_s": fit_end - fit_start,
        "fit_bit_steps": args.steps, "size": args.size, "batch": args.batch, "predict_size": args.predict_size,
        "jax_compilation_cache_dir": os.environ.get("JAX_COMPILATION_CACHE_DIR"),
    }))


if __name__ == "__main__":
    main()
