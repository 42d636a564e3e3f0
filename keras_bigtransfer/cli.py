"""keras-bigtransfer: the command line.

    keras-bigtransfer list [--family=bit]
    keras-bigtransfer download TAG
    keras-bigtransfer convert SRC DST
    keras-bigtransfer export TAG_OR_FILE DIR [--signature=feature_vector] [--archive]
    keras-bigtransfer export TAG_OR_FILE OUT --format=litert [--quantize=int8 --calibration_dir=DIR] [--image_size=224]
    keras-bigtransfer predict MODEL IMAGE... [--top_k=5] [--image_size=224]
    keras-bigtransfer fit MODEL DATA --out=DIR [--total_steps=N] [--batch_size=B] [--base_lr=LR] ...

`keras-bigtransfer COMMAND --help` describes one command.
"""

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("family", None, "list: only this family (bit, efficientnet, vit).")
flags.DEFINE_enum("signature", "feature_vector", ["feature_vector", "classification"],
                  "export: publish pre-logits (feature_vector) or logits (classification).")
flags.DEFINE_boolean("archive", False, "export: also write DIR.tar.gz, the TF Hub module form.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "litert", "onnx", "openvino"],
                  "export: a TF Hub SavedModel directory, a LiteRT .tflite, an .onnx or an OpenVINO .xml file.")
flags.DEFINE_enum("quantize", None, ["float16", "dynamic_int8", "int8"],
                  "export --format=litert: float16 or int8 weights, or int8 everywhere (needs --calibration_dir).")
flags.DEFINE_string("calibration_dir", None, "export --quantize=int8: a directory of images to calibrate on.")
flags.DEFINE_integer("top_k", 5, "predict: how many classes to print per image.")
flags.DEFINE_integer("image_size", None, "predict: resize images to this square size "
                     "(default: the catalogue's resolution for a tag, else 224).")
flags.DEFINE_string("labels", None, "predict: a text file with one class name per line.")
flags.DEFINE_string("out", None, "fit: output directory (model.keras, saved_model/, history.json).")
flags.DEFINE_string("validation_data", None, "fit: held-out data, same kinds as DATA.")
flags.DEFINE_integer("num_classes", None, "fit: classes (default: read off the data).")
flags.DEFINE_integer("num_examples", None, "fit: dataset size, where the data cannot tell.")
flags.DEFINE_integer("batch_size", 512, "fit: global batch size.")
flags.DEFINE_float("base_lr", 0.003, "fit: learning rate at batch 512.")
flags.DEFINE_integer("total_steps", None, "fit: override the HyperRule's length.")
flags.DEFINE_integer("examples_per_class", None, "fit: few-shot, k examples per class.")
flags.DEFINE_string("checkpoint_dir", None, "fit: back up every epoch; rerun to resume.")
flags.DEFINE_string("data_dir", None, "fit: TFDS data directory.")

COMMANDS = {
    "list": ("list [--family=F]", "Print the weights catalogue.", ["family"]),
    "download": ("download TAG", "Download and verify a catalogue checkpoint; print its path.", []),
    "convert": ("convert SRC DST",
                "Convert SRC (a catalogue tag, published .npz/.h5 checkpoint, SavedModel, TF Hub "
                "module or URL) into DST: a .keras file, or the family's published format "
                "(.npz for BiT).", []),
    "export": ("export TAG_OR_FILE OUT [--format=F] [--quantize=Q --calibration_dir=DIR] [--image_size=N] "
               "[--signature=S] [--archive]",
               "Write a TF Hub reusable SavedModel, or a LiteRT, ONNX or OpenVINO file (weight "
               "standardization folded in). --image_size fixes the input size of a file export.",
               ["format", "quantize", "calibration_dir", "image_size", "signature", "archive"]),
    "predict": ("predict MODEL IMAGE... [--top_k=K] [--image_size=N] [--labels=FILE]",
                "Classify image files and print the top-k classes with probabilities.",
                ["top_k", "image_size", "labels"]),
    "fit": ("fit MODEL DATA --out=DIR [flags]",
            "Fine-tune with fit_bit (the BiT-HyperRule). MODEL: a constructor in any case (BiT_M_R50x1), a "
            "catalogue tag or a .keras file; DATA: a TFDS 'name:split' or a directory of class folders.",
            ["out", "validation_data", "num_classes", "num_examples", "image_size", "batch_size",
             "base_lr", "total_steps", "examples_per_class", "checkpoint_dir", "data_dir"]),
}


def _usage(command=None):
    if command is None:
        return __doc__
    usage, text, names = COMMANDS[command]
    lines = [f"usage: keras-bigtransfer {usage}", "", text]
    if names:
        lines += ["", "flags:"] + [f"  --{n}: {FLAGS[n].help}" for n in names]
    return "\n".join(lines) + "\n"


def parse_flags(argv):
    """absl parsing, plus `COMMAND --help` for one command's usage."""
    if len(argv) > 1 and argv[1] in COMMANDS and any(a in ("--help", "-h", "--helpshort") for a in argv[2:]):
        sys.stdout.write(_usage(argv[1]))
        sys.exit(0)
    return FLAGS(argv)


def _need(args, count, command, at_least=False):
    if len(args) < count or (not at_least and len(args) != count):
        raise app.UsageError(f"{command} expects {'at least ' if at_least else ''}{count} argument(s); "
                             f"got {len(args)}.\n\n" + _usage(command))


def cmd_list(args):
    from keras_bigtransfer import hub

    _need(args, 0, "list")
    rows = [("tag", "constructor", "pretrained on", "fine-tuned on", "classes", "res", "format")]
    for e in hub.list_models(FLAGS.family):
        rows.append((e.tag, e.constructor, e.pretrained_on, e.fine_tuned_on or "-",
                     str(e.num_classes), str(e.resolution), e.format))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_download(args):
    from keras_bigtransfer import hub

    _need(args, 1, "download")
    print(hub.resolve(args[0]))


def cmd_convert(args):
    from keras_bigtransfer import hub
    from keras_bigtransfer.models import registry

    _need(args, 2, "convert")
    src, dst = args
    model = hub.load(src)
    if dst.endswith(".keras"):
        model.save(dst)
    else:
        try:
            family = registry.family_of(model)
        except ValueError:
            family = None
        if family is None or not dst.endswith(family.export_formats):
            formats = sorted({".keras"} | {f for fam in registry.families() for f in fam.export_formats})
            raise app.UsageError(
                f"convert: DST must end in one of {formats}; {getattr(model, 'name', src)} "
                f"({family.name if family else 'no registered family'}) is written as "
                f"{['.keras', *family.export_formats] if family else ['.keras']}; got {dst!r}."
            )
        family.to_published(model, dst)
    print(dst)


def cmd_export(args):
    from keras_bigtransfer import hub

    _need(args, 2, "export")
    if FLAGS.format != "saved_model" or FLAGS.quantize or FLAGS.calibration_dir:
        from keras_bigtransfer import deploy

        deploy.check_options(FLAGS.format, FLAGS.quantize, FLAGS.calibration_dir)  # before any download
    if FLAGS.format == "saved_model":
        written = hub.export(hub.load(args[0]), args[1], signature=FLAGS.signature, archive=FLAGS.archive)
    else:
        signature = FLAGS.signature if FLAGS["signature"].present else None
        size = (FLAGS.image_size, FLAGS.image_size) if FLAGS.image_size else None
        written = hub.export(hub.load(args[0]), args[1], format=FLAGS.format, quantize=FLAGS.quantize,
                             representative_data=FLAGS.calibration_dir, input_shape=size, signature=signature)
    print("\n".join(written) if isinstance(written, tuple) else written)


def cmd_predict(args):
    import keras
    import numpy as np

    from keras_bigtransfer import hub

    _need(args, 2, "predict", at_least=True)
    source, paths = args[0], args[1:]
    from keras_bigtransfer.preprocessing import eval_settings, eval_transform

    entry = hub.catalogue.find(source) if not os.path.exists(source) else None
    model = hub.load(source)
    # The weights' published evaluation view (size, crop_pct, interpolation: the catalogue's).
    native, crop_pct, interpolation = eval_settings(entry if entry is not None else model)
    size = FLAGS.image_size or native
    labels = None
    if FLAGS.labels:
        with open(FLAGS.labels) as f:
            labels = [line.strip() for line in f]
    for path in paths:
        photo = keras.utils.img_to_array(keras.utils.load_img(path)) / 255.0
        image = eval_transform(photo, size, crop_pct=crop_pct, interpolation=interpolation)
        outputs = model(image[None])
        if isinstance(outputs, dict):  # a foreign SavedModel's signature, wrapped in a TFSMLayer
            outputs = next(iter(outputs.values()))
        logits = np.asarray(outputs)
        probs = np.asarray(keras.ops.softmax(logits[0]))
        top = np.argsort(probs)[::-1][: FLAGS.top_k]
        ranked = ", ".join(f"{labels[i] if labels else i} ({probs[i]:.4f})" for i in top)
        print(f"{path}: {ranked}")


def cmd_fit(args):
    import json

    from keras_bigtransfer import hub
    from keras_bigtransfer.models import registry
    from keras_bigtransfer.training import data as data_lib
    from keras_bigtransfer.training.fit_bit import fit_bit

    _need(args, 2, "fit")
    if not FLAGS.out:
        raise app.UsageError("fit needs --out=DIR.\n\n" + _usage("fit"))
    source, data = args
    num_classes = FLAGS.num_classes or data_lib.load_source(data, data_dir=FLAGS.data_dir).num_classes
    known = not os.path.exists(source) and (
        registry.find_variant(source) is not None or hub.catalogue.find(source) is not None)
    if known:
        if num_classes is None:
            raise app.UsageError("fit: pass --num_classes; the data does not say how many classes it has.")
        model = registry.create_model(source, num_classes=num_classes)
    else:
        model = hub.load(source)
    image_size = (FLAGS.image_size, FLAGS.image_size) if FLAGS.image_size else None
    history = fit_bit(
        model, data, FLAGS.validation_data, num_examples=FLAGS.num_examples, image_size=image_size,
        batch_size=FLAGS.batch_size, base_lr=FLAGS.base_lr, total_steps=FLAGS.total_steps,
        checkpoint_dir=FLAGS.checkpoint_dir, examples_per_class=FLAGS.examples_per_class,
        data_dir=FLAGS.data_dir, verbose=2,
    )
    os.makedirs(FLAGS.out, exist_ok=True)
    model.save(os.path.join(FLAGS.out, "model.keras"))
    hub.export(model, os.path.join(FLAGS.out, "saved_model"), signature="classification")
    with open(os.path.join(FLAGS.out, "history.json"), "w") as f:
        json.dump({"rule": history.rule.__dict__, "history": history.history}, f, indent=1)
    print(FLAGS.out)


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(_usage())
    try:
        globals()["cmd_" + argv[1]](argv[2:])
    except (ValueError, OSError) as e:  # bad input or a failed download: say what, no traceback
        sys.exit(f"keras-bigtransfer {argv[1]}: {e}")


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
