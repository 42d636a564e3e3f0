"""keras-bigtransfer: the command line.

    keras-bigtransfer list [--family=bit] [--wide]
    keras-bigtransfer download TAG
    keras-bigtransfer convert SRC DST [--overwrite]
    keras-bigtransfer export TAG_OR_FILE DIR [--signature=feature_vector] [--archive] [--overwrite]
    keras-bigtransfer export TAG_OR_FILE OUT --format=litert [--quantize=int8 --calibration_dir=DIR] [--image_size=224]
    keras-bigtransfer predict MODEL IMAGE... [--top_k=5] [--image_size=224] [--labels=FILE]
    keras-bigtransfer fit MODEL DATA --out=DIR [--recipe=bit|vit] [--resolution=N] [--total_steps=N] [--batch_size=B] ...

`keras-bigtransfer help` lists the commands and their flags; `keras-bigtransfer help COMMAND`
(or `COMMAND --help`) describes one. Errors print one line;
--debug (or KERAS_BIGTRANSFER_DEBUG=1) shows the traceback instead.
"""

import math
import os
import sys

from absl import app, flags

from keras_bigtransfer.extras import MissingExtraError

PROG = "keras-bigtransfer"
ENV_DEBUG = "KERAS_BIGTRANSFER_DEBUG"

def _families():
    """The catalogue's families (the --family choices): read off the catalogue, not listed here."""
    from keras_bigtransfer.weights import catalogue

    return sorted({entry.family for entry in catalogue.list_models()})


# What `fit --out=DIR` writes; a directory holding only these is an earlier run of ours.
FIT_OUTPUTS = ("model.keras", "saved_model", "history.json")
# The view `predict` takes of a photo no catalogue entry describes: preprocessing.center_crop's,
# the API's (a catalogued tag or model gets its entry's: preprocessing.eval_settings).
PREDICT_CROP_PCT = 0.875
PREDICT_INTERPOLATION = "bicubic"

FLAGS = flags.FLAGS
flags.DEFINE_enum("family", None, _families(), "list: only this family.")
flags.DEFINE_boolean("wide", False, "list: every column in full (constructor, pretrained on, fine-tuned on, "
                     "format too), however wide; without it the rows fit 100 columns.")
flags.DEFINE_enum("signature", "feature_vector", ["feature_vector", "classification"],
                  "export: publish pre-logits (feature_vector) or logits (classification).")
flags.DEFINE_boolean("archive", False, "export: also write DIR.tar.gz, the TF Hub module form.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "litert", "onnx", "openvino"],
                  "export: a TF Hub SavedModel directory, a LiteRT .tflite, an .onnx or an OpenVINO .xml file.")
flags.DEFINE_enum("quantize", None, ["float16", "dynamic_int8", "int8"],
                  "export --format=litert: float16 or int8 weights, or int8 everywhere (needs --calibration_dir).")
flags.DEFINE_string("calibration_dir", None, "export --quantize=int8: a directory of images to calibrate on.")
flags.DEFINE_boolean("overwrite", False, "convert, export, fit: replace existing output files that are not "
                     "earlier outputs of this tool (without it, they are refused); fit: also discard the run "
                     "in --checkpoint_dir. A directory that is not an export, the current directory and its "
                     "ancestors are never replaced.")
flags.DEFINE_integer("top_k", 5, "predict: how many classes to print per image.", lower_bound=1)
flags.DEFINE_integer("image_size", None, "predict: the side of the centre crop the model sees "
                     "(default: the weights' published evaluation size for a tag, the model's input size "
                     "if fixed, else 224); export --format=litert/onnx/openvino: the fixed input size. "
                     "(fit: refused; the training resolution is --resolution.)", lower_bound=1)
flags.DEFINE_enum("recipe", "bit", ["bit", "vit"], "fit: the fine-tuning recipe, fit_bit's recipe=: bit, the "
                  "BiT-HyperRule; vit, the ViT paper's (SGD momentum 0.9, warmup then cosine decay to 0, "
                  "gradients clipped at global norm 1, 384-pixel crops).")
flags.DEFINE_integer("resolution", None, "fit: the training resolution, fit_bit's resolution=: random crops "
                     "of this side from images resized to the recipe's ratio of it (bit 1.25x, vit 448/384) "
                     "(default: the recipe's; bit: 128 for images under 96x96 pixels, else 480; vit: 384).",
                     lower_bound=8)
flags.DEFINE_string("labels", None, "predict: a text file with one class name per line, one per class "
                    "(default: ImageNet's names for 1000- and 21843-way heads).")
flags.DEFINE_string("out", None, "fit: output directory (model.keras, saved_model/ (not from PyTorch: "
                    "export model.keras under TensorFlow or JAX), history.json).")
flags.DEFINE_string("validation_data", None, "fit: held-out data, same kinds as DATA.")
flags.DEFINE_integer("num_classes", None, "fit: classes (default: read off the data).", lower_bound=1)
flags.DEFINE_integer("num_examples", None, "fit: dataset size, where the data cannot tell.", lower_bound=1)
flags.DEFINE_integer("batch_size", 512, "fit: global batch size.", lower_bound=1)
flags.DEFINE_float("base_lr", None, "fit: learning rate at batch 512 (default: the recipe's, bit 0.003, vit 0.01).")
flags.DEFINE_integer("total_steps", None, "fit: override the recipe's length.", lower_bound=1)
flags.DEFINE_integer("examples_per_class", None, "fit: few-shot, k examples per class.", lower_bound=1)
flags.DEFINE_string("checkpoint_dir", None, "fit: back up every epoch; rerun to resume.")
flags.DEFINE_string("data_dir", None, "fit: TFDS data directory.")
flags.DEFINE_boolean("debug", False, "any command: show the full traceback of an error.")
flags.register_validator("base_lr", lambda v: v is None or (math.isfinite(v) and v > 0),
                         message="--base_lr must be a finite number > 0")

COMMANDS = {
    "list": ("list [--family=F] [--wide]", "Print the weights catalogue.", ["family", "wide"]),
    "download": ("download TAG", "Download and verify a catalogue checkpoint; print its path.", []),
    "convert": ("convert SRC DST [--overwrite]",
                "Convert SRC (a catalogue tag, published .npz/.h5 checkpoint, SavedModel, TF Hub "
                "module or URL) into DST: a .keras file, or the family's published format "
                "(.npz for BiT). An existing DST is refused without --overwrite.", ["overwrite"]),
    "export": ("export TAG_OR_FILE OUT [--format=F] [--quantize=Q --calibration_dir=DIR] [--image_size=N] "
               "[--signature=S] [--archive] [--overwrite]",
               "Write a TF Hub reusable SavedModel, or a LiteRT, ONNX or OpenVINO file (weight "
               "standardization folded in). --image_size fixes the input size of a file export. A "
               "SavedModel DIR may exist only empty or as an earlier export (never replaced otherwise); "
               "DIR.tar.gz only as an earlier archive and a file OUT not at all, unless --overwrite.",
               ["format", "quantize", "calibration_dir", "image_size", "signature", "archive", "overwrite"]),
    "predict": ("predict MODEL IMAGE... [--top_k=K] [--image_size=N] [--labels=FILE]",
                "Classify image files (the weights' published evaluation view, preprocessing.eval_settings; "
                "else the centre crop of preprocessing.center_crop) and print the top-k classes with "
                "probabilities.",
                ["top_k", "image_size", "labels"]),
    "fit": ("fit MODEL DATA --out=DIR [flags]",
            "Fine-tune with fit_bit (the BiT-HyperRule, or --recipe=vit). MODEL: a constructor in any case (BiT_M_R50x1), a "
            "catalogue tag or a .keras file; DATA: a TFDS 'name:split' or a directory of class folders. "
            "An earlier run's outputs in DIR are replaced; other existing outputs need --overwrite.",
            ["out", "validation_data", "num_classes", "num_examples", "recipe", "resolution", "batch_size",
             "base_lr", "total_steps", "examples_per_class", "checkpoint_dir", "data_dir", "overwrite"]),
}
_OUR_FLAGS = sorted({name for _, _, names in COMMANDS.values() for name in names})


HELP_ARGS = ("--help", "-h", "--helpshort", "--helpfull", "help")


def _wrap(text, indent):
    import textwrap

    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent + "  ")


def _flag_lines(names, indent="  "):
    return [_wrap(f"--{n}: {FLAGS[n].help}", indent) for n in names]


def _usage(command=None):
    """One command's usage and flags, or (command None) every command's."""
    if command is None:
        lines = [f"usage: {PROG} COMMAND [ARGS] [FLAGS]", "",
                 f"Commands ('{PROG} help COMMAND' or '{PROG} COMMAND --help' describes one):"]
        for name, (usage, text, names) in COMMANDS.items():
            lines += ["", _wrap(f"{PROG} {usage}", "  "), _wrap(text, "      ")] + _flag_lines(names, "      ")
        lines += ["", "Every command:"] + _flag_lines(["debug"])
        return "\n".join(lines) + "\n"
    usage, text, names = COMMANDS[command]
    lines = [_wrap(f"usage: {PROG} {usage}", ""), "", _wrap(text, "")]
    if names:
        lines += ["", "flags:"] + _flag_lines(names)
    return "\n".join(lines) + "\n"


def _help(argv):
    """`--help`, `-h`, `help` [COMMAND] and `COMMAND --help`: the usage on stdout, exit 0.
    Anything else: None."""
    args = argv[1:]
    if not any(a in HELP_ARGS for a in args[:1]) and not (
            args and args[0] in COMMANDS and any(a in HELP_ARGS[:4] for a in args[1:])):
        return None
    named = [a for a in args if a in COMMANDS]
    if args[0] == "help" and len(args) > 1 and not named:
        _fail(f"help: unknown command {args[1]!r}; the commands are {', '.join(COMMANDS)}.", code=2)
    sys.stdout.write(_usage(named[0] if named else None))
    sys.exit(0)


def _fail(message, code=1):
    """Print `keras-bigtransfer: error: MESSAGE` on one line and exit with `code`."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    sys.stderr.write(f"{PROG}: error: {text}\n")
    sys.exit(code)


def _debug():
    return FLAGS.is_parsed() and FLAGS.debug or os.environ.get(ENV_DEBUG, "").strip().lower() in (
        "1", "true", "yes", "on")


def parse_flags(argv):
    """absl parsing, plus the help (`_help`); a bad flag is one line."""
    _help(argv)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        if "--debug" in argv or _debug():
            raise
        command = f"{argv[1]} " if len(argv) > 1 and argv[1] in COMMANDS else ""
        _fail(f"{e}. Run '{PROG} {command}--help'.", code=2)


def _need(args, count, command, at_least=False):
    if len(args) < count or (not at_least and len(args) != count):
        raise app.UsageError(f"{command} expects {'at least ' if at_least else ''}{count} argument(s); "
                             f"got {len(args)}.")


# Output checks: cheap, so they run before anything is loaded, downloaded or trained.

def _check_output_file(path, extensions, what):
    """The CLI's extension rule; the rest is the writers' own (`weights.atomic.check_file_target`)."""
    if not path.endswith(extensions):
        raise app.UsageError(f"{what} must end in {' or '.join(extensions)}; got {path!r}.")
    from keras_bigtransfer.weights.atomic import check_file_target

    check_file_target(path, overwrite=FLAGS.overwrite, prefix=f"{what}: ")


def _check_fit_out(out, checkpoint_dir):
    if out.endswith((".keras", ".h5", ".npz", ".json")):
        raise app.UsageError(f"--out is a directory (model.keras, saved_model/ and history.json go in it); "
                             f"got {out!r}, a file name.")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out={out} exists and is not a directory.")
    if os.path.isdir(out):
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(f"--out={out} is not writable.")
        ours = set(FIT_OUTPUTS)
        if checkpoint_dir and os.path.dirname(os.path.abspath(checkpoint_dir)) == os.path.abspath(out):
            ours.add(os.path.basename(os.path.abspath(checkpoint_dir)))
        foreign = sorted(set(os.listdir(out)) - ours)
        present = [name for name in FIT_OUTPUTS if os.path.lexists(os.path.join(out, name))]
        if present and foreign and not FLAGS.overwrite:
            raise FileExistsError(
                f"--out={out} holds {', '.join(present)} next to other files ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}), so it is not an earlier fit run's output; "
                "pass --overwrite to replace those outputs, or choose a new --out.")
        saved = os.path.join(out, "saved_model")
        if os.path.lexists(saved):
            from keras_bigtransfer.tfhub.export import check_export_target

            check_export_target(saved, overwrite=FLAGS.overwrite)
    else:
        from keras_bigtransfer.weights.atomic import check_writable

        check_writable(out, prefix="--out: ")


LIST_WIDTH = 100  # `list` rows without --wide
MIN_DATA_WIDTH = 12  # the data column is cut to fit; tags never are (they are typed back)


def _table(rows, widths):
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def cmd_list(args):
    from keras_bigtransfer import hub

    _need(args, 0, "list")
    entries = hub.list_models(FLAGS.family)
    if FLAGS.wide:
        rows = [("tag", "constructor", "pretrained on", "fine-tuned on", "classes", "res", "format")]
        rows += [(e.tag, e.constructor, e.pretrained_on, e.fine_tuned_on or "-", str(e.num_classes),
                  str(e.resolution), e.format) for e in entries]
        print("\n".join(_table(rows, [max(len(r[i]) for r in rows) for i in range(len(rows[0]))])))
        return
    # Tag, classes, resolution, then the training data (pretrained on -> fine-tuned on) cut to
    # what is left of LIST_WIDTH; the constructor and format are for --wide.
    rows = [("tag", "classes", "res", "data")]
    rows += [(e.tag, str(e.num_classes), str(e.resolution),
              e.pretrained_on + (f" -> {e.fine_tuned_on}" if e.fine_tuned_on else "")) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    room = max(MIN_DATA_WIDTH, LIST_WIDTH - sum(widths) - 2 * len(widths))
    rows = [row[:3] + (row[3] if len(row[3]) <= room else row[3][:room - 3] + "...",) for row in rows]
    print("\n".join(_table(rows, widths + [room])))


def cmd_download(args):
    from keras_bigtransfer import hub

    _need(args, 1, "download")
    print(hub.resolve(args[0]))


def _convert_formats():
    """The extensions `convert` writes: .keras, and each family's published format."""
    from keras_bigtransfer.models import registry

    return (".keras",) + tuple(sorted({f for fam in registry.families() for f in fam.export_formats}))


def _writers(extension):
    """The families whose published format ends in `extension`, and a constructor of one."""
    from keras_bigtransfer.models import registry

    names = [fam.name for fam in registry.families() if extension in fam.export_formats]
    example = next((v.name for v in registry.variants(names[0])), names[0]) if names else None
    return names, example


def cmd_convert(args):
    _need(args, 2, "convert")
    src, dst = args
    _check_output_file(dst, _convert_formats(), "convert: DST")

    from keras_bigtransfer import hub
    from keras_bigtransfer.models import registry
    from keras_bigtransfer.weights.atomic import atomic_file

    extension = os.path.splitext(dst)[1]
    entry = hub.catalogue.find(src) if not os.path.exists(src) else None
    if extension != ".keras" and entry is not None:
        names, example = _writers(extension)
        if entry.family not in names:
            raise app.UsageError(
                f"convert: {extension} is the published layout of {', '.join(names)} models "
                f"(e.g. {example}); {src} is a {entry.family} checkpoint. Write a .keras file instead.")
    model = hub.load(src)
    if dst.endswith(".keras"):
        with atomic_file(dst, suffix=".keras") as tmp:
            model.save(tmp)
    else:
        family = registry.family_of(model, None)
        if family is None or not dst.endswith(family.export_formats):
            names, example = _writers(extension)
            raise app.UsageError(
                f"convert: {extension} is the published layout of {', '.join(names)} models "
                f"(e.g. {example}); {getattr(model, 'name', src)} "
                f"({family.name if family else 'no registered family'}) is not one. Write a .keras file instead."
            )
        family.to_published(model, dst)  # atomic, as every writer of the package
    print(dst)


def cmd_export(args):
    _need(args, 2, "export")
    source, target = args
    from keras_bigtransfer import deploy, hub

    # A flag that would do nothing for this format is refused, not ignored.
    if FLAGS.format != "saved_model" and FLAGS.archive:
        raise app.UsageError(f"--archive writes DIR.tar.gz, the TF Hub form of a SavedModel; --format={FLAGS.format} "
                             "writes one file. Leave out --archive, or export --format=saved_model.")
    if FLAGS.format == "saved_model" and FLAGS.image_size:
        raise app.UsageError("--image_size fixes the input size of a --format=litert/onnx/openvino file; a "
                             "SavedModel keeps the model's own input size. Leave out --image_size.")
    # Before any download: the options, and whether this Keras backend writes the format.
    deploy.check_options(FLAGS.format, FLAGS.quantize, FLAGS.calibration_dir)
    if FLAGS.format == "saved_model":
        from keras_bigtransfer.tfhub.export import check_export_target

        check_export_target(target, archive=FLAGS.archive, overwrite=FLAGS.overwrite)
        written = hub.export(hub.load(source), target, signature=FLAGS.signature, archive=FLAGS.archive,
                             overwrite=FLAGS.overwrite)
        what = f"a TF Hub SavedModel ({FLAGS.signature})"
        if FLAGS.archive:  # hub.export returns the archive; the directory stays beside it
            what += f" to {os.path.abspath(target).rstrip(os.sep)} and its archive"
    else:
        # A directory, an unwritable parent or (without --overwrite) an existing file is refused
        # before any download or conversion: the export's own check.
        deploy.check_output_target(deploy.output_path(target, FLAGS.format), FLAGS.format, overwrite=FLAGS.overwrite)
        signature = FLAGS.signature if FLAGS["signature"].present else None
        size = (FLAGS.image_size, FLAGS.image_size) if FLAGS.image_size else None
        written = hub.export(hub.load(source), target, format=FLAGS.format, quantize=FLAGS.quantize,
                             representative_data=FLAGS.calibration_dir, input_shape=size, signature=signature,
                             overwrite=FLAGS.overwrite)
        what = {"litert": "a LiteRT file", "onnx": "an ONNX file", "openvino": "an OpenVINO IR (.xml and .bin)"}[
            FLAGS.format] + (f" ({FLAGS.quantize})" if FLAGS.quantize else "")
    print(f"export: wrote {what} to {written}")


def _read_image(path):
    from keras_bigtransfer.preprocessing import read_image_file  # the package's one reading rule

    return read_image_file(path, what="predict")


def _read_labels(path):
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ValueError(f"--labels={path} is empty; it needs one class name per line.")
    return labels


def _class_name(index, labels, names):
    if labels:
        return labels[index]
    return f"{index} {names[index]}" if names else str(index)


def cmd_predict(args):
    _need(args, 2, "predict", at_least=True)
    source, paths = args[0], args[1:]
    import numpy as np

    # Everything the user gave is read before the (slow) model load.
    labels = _read_labels(FLAGS.labels) if FLAGS.labels else None
    photos = [_read_image(path) for path in paths]

    import keras

    from keras_bigtransfer import hub
    from keras_bigtransfer.datasets import class_names
    from keras_bigtransfer.preprocessing import eval_settings, eval_transform, to_numpy

    entry = hub.catalogue.find(source) if not os.path.exists(source) else None
    model = hub.load(source)
    fixed = None
    if getattr(model, "inputs", None):
        shape = tuple(model.inputs[0].shape)
        fixed = shape[1:3] if len(shape) == 4 and None not in shape[1:3] else None
    # The weights' published evaluation view (size, crop_pct, interpolation: the catalogue's);
    # a model no catalogue entry describes gets the API's view (preprocessing.center_crop).
    native, crop_pct, interpolation = eval_settings(entry if entry is not None else model,
                                                    defaults=(PREDICT_CROP_PCT, PREDICT_INTERPOLATION))
    size = FLAGS.image_size or native
    if fixed and FLAGS.image_size and tuple(fixed) != (size, size):
        raise ValueError(f"predict: {source} takes {fixed[0]}x{fixed[1]} images; --image_size={size} "
                         "does not fit it (leave --image_size out to use the model's size).")

    for path, photo in zip(paths, photos):
        image = eval_transform(photo, size, crop_pct=crop_pct, interpolation=interpolation)
        outputs = model(image[None])
        if isinstance(outputs, dict):  # a foreign SavedModel's signature, wrapped in a TFSMLayer
            outputs = next(iter(outputs.values()))
        logits = to_numpy(outputs)  # torch: a tensor that requires grad
        if logits.ndim != 2:
            raise ValueError(f"predict: {source} outputs shape {logits.shape[1:]} per image, not class "
                             "scores; predict needs a classifier (include_top=True).")
        num_classes = logits.shape[1]
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"--labels={FLAGS.labels} names {len(labels)} classes but {source} has "
                             f"{num_classes}; give one name per class, in the head's order.")
        if labels is None:  # the class names a fine-tuning kept (fit on class folders)
            kept = getattr(model, "pretrained_cfg", {}).get("label_names")
            labels = list(kept) if kept and len(kept) == num_classes else None
        names = labels or class_names(num_classes)
        probs = to_numpy(keras.ops.softmax(logits[0]))
        top = np.argsort(probs)[::-1][: FLAGS.top_k]
        print(f"{path}: " + "; ".join(f"{_class_name(i, labels, names)} ({probs[i]:.4f})" for i in top))


def cmd_fit(args):
    if FLAGS["image_size"].present:
        # It once fed the HyperRule's dataset-size input while documented as the training
        # resolution: refused rather than kept, so no script silently trains at another size.
        raise app.UsageError("fit does not take --image_size; the training resolution is --resolution=N "
                             "(fit_bit's resolution=).")
    _need(args, 2, "fit")
    if not FLAGS.out:
        raise app.UsageError("fit needs --out=DIR.")
    source, data = args
    _check_fit_out(FLAGS.out, FLAGS.checkpoint_dir)

    import json

    import keras_bigtransfer as kb
    from keras_bigtransfer import hub
    from keras_bigtransfer.models import registry, timm_names
    from keras_bigtransfer.training import data as data_lib
    from keras_bigtransfer.weights.atomic import atomic_file

    known = not os.path.exists(source) and (
        registry.find_variant(source) is not None or hub.catalogue.find(source) is not None
        or timm_names.resolve(source) is not None)
    if not (known or os.path.exists(source)):
        raise ValueError(f"fit: MODEL {source!r} is neither a constructor (e.g. BiT_M_R50x1), a catalogue tag "
                         f"({PROG} list) nor an existing file.")
    tfds_names = [d for d in (data, FLAGS.validation_data) if d and not os.path.exists(d)]
    if FLAGS.data_dir and not tfds_names:  # class folders only: the TFDS directory would do nothing
        raise app.UsageError(f"--data_dir is where TFDS datasets live; DATA {data} is a directory of class "
                             "folders. Leave out --data_dir.")
    if not known and FLAGS.num_classes:  # a file keeps its own head: the flag would do nothing
        raise app.UsageError(f"--num_classes builds the head of a constructor or catalogue tag; MODEL {source} is a "
                             "file and keeps its own head. Leave out --num_classes, or build the model with "
                             "the classes you need and save it.")
    num_classes = FLAGS.num_classes or data_lib.load_source(data, data_dir=FLAGS.data_dir).num_classes
    if known:
        if num_classes is None:
            raise app.UsageError("fit: pass --num_classes; the data does not say how many classes it has.")
        model = registry.create_model(source, num_classes=num_classes)
    else:
        model = hub.load(source)
    history = kb.fit_bit(
        model, data, FLAGS.validation_data, recipe=FLAGS.recipe, num_examples=FLAGS.num_examples,
        resolution=FLAGS.resolution,
        batch_size=FLAGS.batch_size, base_lr=FLAGS.base_lr, total_steps=FLAGS.total_steps,
        checkpoint_dir=FLAGS.checkpoint_dir, examples_per_class=FLAGS.examples_per_class,
        data_dir=FLAGS.data_dir, verbose=2, overwrite=FLAGS.overwrite,
    )
    # Each output appears whole or not at all; the saved_model replaces only an earlier export.
    with atomic_file(os.path.join(FLAGS.out, "model.keras"), suffix=".keras") as tmp:
        model.save(tmp)
    from keras_bigtransfer import deploy

    try:
        deploy.check_backend("saved_model")
    except ValueError as why:  # PyTorch: the trained model is kept; the SavedModel is for later
        sys.stderr.write(f"{PROG}: fit: saved_model/ not written: {why}\n")
    else:
        hub.export(model, os.path.join(FLAGS.out, "saved_model"), signature="classification",
                   overwrite=FLAGS.overwrite)
    with atomic_file(os.path.join(FLAGS.out, "history.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump({"recipe": FLAGS.recipe, "rule": history.rule.__dict__, "history": history.history}, f, indent=1)
    print(FLAGS.out)


def main(argv):
    """Run one command; every user error (bad input, a missing or bad file, offline, a
    failed download or checksum) is one line on stderr and exit status 1 (2 for usage)."""
    _quiet_tensorflow()
    if len(argv) < 2 or argv[1] not in COMMANDS:
        sys.stderr.write(_usage())
        _fail(f"unknown command {argv[1]!r}" if len(argv) > 1 else "no command given", code=2)
    command = argv[1]
    try:
        stray = [n for n in _OUR_FLAGS if FLAGS[n].present and n not in COMMANDS[command][2]
                 and not (command == "fit" and n == "image_size")]  # cmd_fit says what replaced it
        if stray:
            raise app.UsageError(f"{command} does not take --{', --'.join(stray)}.")
        globals()["cmd_" + command](argv[2:])
    except app.UsageError as e:
        if _debug():
            raise
        _fail(f"{e} Run '{PROG} {command} --help'.", code=2)
    except (ValueError, OSError, MissingExtraError, FloatingPointError) as e:
        # ValueError: bad input, WeightsError, ChecksumError; OSError: missing files,
        # OfflineError, DownloadError, permissions; MissingExtraError: an extra to install;
        # FloatingPointError: TrainingDivergedError.
        if _debug():
            raise
        # Library messages that already name the command ("export: ...") are not prefixed twice.
        text = str(e)
        _fail(text if text.startswith(f"{command}:") else f"{command}: {text}")
    except KeyboardInterrupt:
        if _debug():
            raise
        _fail("interrupted", code=130)


def _quiet_tensorflow():
    """TensorFlow's Python INFO lines (absl's app.run logs at INFO; a SavedModel export writes a
    dozen) hidden: each command prints its own result. --debug keeps them. The C++ start-up lines
    are hidden by keras_bigtransfer/__init__.py, before Keras imports TensorFlow."""
    if _debug():
        return
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def run():
    """The `keras-bigtransfer` entry point."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
