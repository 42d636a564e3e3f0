"""Crash-safe training backups and the record of a run in its `checkpoint_dir`.

fit_bit, Noisy Student and Meta Pseudo Labels share this: the directory is checked
for writing before any work, a small JSON record says which run it holds (models,
settings, data, finished or not), and each backup is one atomically written file, so
a kill at any instant leaves either the previous backup or the new one.

Keras' `BackupAndRestore` (even with `double_checkpoint=True`) writes the weights and
a separate JSON of the epoch in place: a kill between or inside the two writes leaves
an epoch that disagrees with the weights or a truncated JSON it cannot read. Here the
step is the optimizer's own `iterations`, stored in the same file as the weights.
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile

import h5py
import keras
import numpy as np

from keras_bigtransfer.weights.atomic import atomic_file, check_removable
from keras_bigtransfer.errors import WeightsError

log = logging.getLogger(__name__)

RECORD = "run.json"
BACKUP = "backup.weights.h5"
RANDOM_STATE = "keras_bigtransfer_random_state"  # an extra h5 group; Keras' load_weights ignores it
FORMAT = 2  # 2: settings hold the recipe config whole ({"config": asdict(config), ...})


def writable_dir(path, what="checkpoint_dir"):
    """Create `path` if needed and prove it writable; raise an OSError naming `what` if not."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        # OSError(errno, ...) builds the matching subclass (PermissionError, NotADirectoryError...).
        raise OSError(e.errno, f"{what}={path!r} cannot be created or written ({e.strerror or e}); "
                               "pass a writable directory. Nothing was trained.") from e
    return path


def describe_models(**models):
    """Name, variable counts and a fingerprint of every variable's shape, dtype and trainability.

    Layer names are left out: Keras numbers them per session, so the same architecture
    built twice in one process would otherwise differ.
    """
    summary, digest = {}, hashlib.sha256()
    for role, model in models.items():
        trainable = {id(v) for v in model.trainable_weights}
        for v in model.weights:
            digest.update(f"{role}|{tuple(v.shape)}|{v.dtype}|{id(v) in trainable};".encode())
        summary[role] = {
            "name": model.name,
            "variables": len(model.weights),
            "trainable_variables": len(model.trainable_weights),
            "parameters": int(sum(int(np.prod(v.shape)) for v in model.weights)),
        }
    return {"models": summary, "fingerprint": digest.hexdigest()[:16]}


def describe_data(data, source=None):
    """What can be told cheaply about training data, recorded so a resume with other data is refused.

    Always the size, image size and class count the pipeline read. NumPy arrays: a digest of
    their bytes. A directory of class folders: the count and a digest of its files' relative
    paths and sizes (a file edited in place to the same size is not seen). A `tf.data.Dataset`:
    its cardinality and element spec (what it yields is not read: a pipeline of the same
    shape over other files is not seen). A TFDS "name:split": the name and its size.
    """
    out = {}
    if source is not None:
        out = {"num_examples": source.num_examples,
               "image_size": list(source.image_size) if source.image_size else None,
               "num_classes": source.num_classes}
    if isinstance(data, (str, os.PathLike)):
        out["source"] = os.fspath(data)
        if os.path.isdir(data):
            out["files"] = _directory_digest(os.fspath(data))
    elif isinstance(data, (tuple, list)) or isinstance(data, np.ndarray):
        arrays = data if isinstance(data, (tuple, list)) else (data,)
        digest = hashlib.blake2b(digest_size=16)
        for a in arrays:
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.data)
        out["digest"] = digest.hexdigest()
    elif hasattr(data, "element_spec") and hasattr(data, "cardinality"):  # a tf.data.Dataset
        out["cardinality"] = int(data.cardinality())
        out["element_spec"] = repr(data.element_spec)
    return out


def _directory_digest(path):
    """{"count", "digest"} of the non-hidden files under `path`: relative paths and sizes."""
    digest, count = hashlib.blake2b(digest_size=16), 0
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}\0{os.path.getsize(full)}\n".encode())
            count += 1
    return {"count": count, "digest": digest.hexdigest()}


class Run:
    """The record of one training run in `checkpoint_dir`, checked against this call.

    Args:
        path: the checkpoint directory (made and checked writable first).
        trainer: "fit_bit", "noisy_student" or "meta_pseudo_labels".
        models: `describe_models(...)` of the models being trained.
        settings: everything else that must match for a resume to equal an uninterrupted
            run (steps, batch size, learning rate, seed, data description).
        overwrite: discard whatever run `path` holds (only the files this module writes
            and `owned` names) and start afresh.
        owned: further names under `path` that belong to the run (removed on overwrite).
        recipe: the trainer's recipe ("bit", "vit" for fit_bit), checked before the rest.

    Raises:
        WeightsError: `path` holds a run of different models.
        ValueError: `path` holds a finished run, one of another recipe, one written in another
            record format, or one with different settings.
    """

    def __init__(self, path, trainer, models, settings, *, overwrite=False, owned=(), recipe=None):
        self.path = writable_dir(path)
        self.record = {"format": FORMAT, "trainer": trainer, **({"recipe": recipe} if recipe else {}), **models,
                       "settings": json.loads(json.dumps(settings)), "finished": False}
        self.owned = (RECORD, BACKUP, *owned)
        previous = self._read()
        if previous is not None and overwrite:
            log.info("checkpoint_dir=%r: overwrite=True, discarding its %s run", self.path,
                     previous.get("trainer"))
            self.clear()
        elif previous is not None:
            self._check(previous)

    @property
    def record_path(self):
        return os.path.join(self.path, RECORD)

    def _read(self):
        if not os.path.exists(self.record_path):
            return None
        try:
            with open(self.record_path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"checkpoint_dir={self.path!r}: its run record {RECORD} is unreadable ({e}). Pass a "
                "new checkpoint_dir, or overwrite=True to discard what it holds and start afresh."
            ) from e

    def _check(self, old):
        new = self.record
        where = f"checkpoint_dir={self.path!r}"
        remedy = ("Pass a new checkpoint_dir, or overwrite=True to discard it and start afresh.")
        if old.get("trainer") != new["trainer"]:
            raise ValueError(f"{where} holds a {old.get('trainer')} run, not a {new['trainer']} one. {remedy}")
        if old.get("format") != FORMAT:
            raise ValueError(f"{where} holds a run recorded in format {old.get('format')} (an older "
                             f"keras_bigtransfer), which this version (format {FORMAT}) cannot resume. {remedy}")
        if old.get("recipe") != new.get("recipe"):
            raise ValueError(f"{where} holds a {new['trainer']} run of recipe={old.get('recipe')!r}, not "
                             f"recipe={new.get('recipe')!r}: a run cannot change recipes. Rerun with "
                             f"recipe={old.get('recipe')!r} to resume it. {remedy}")
        if old.get("fingerprint") != new["fingerprint"]:
            differences = []
            for role, now in new["models"].items():
                then = old.get("models", {}).get(role, {})
                for key, value in now.items():
                    if then.get(key) != value:
                        differences.append(f"{role} {key}: {then.get(key)!r} there, {value!r} in this call")
            raise WeightsError(
                f"{where} holds a backup of a different model, so it cannot be resumed: "
                + ("; ".join(differences) or "the variable shapes differ")
                + f". {remedy}"
            )
        changed = _differences(old.get("settings", {}), new["settings"])
        if old.get("finished"):
            raise ValueError(
                f"{where} holds a finished {old['trainer']} run"
                + (f" (of other settings: {'; '.join(changed)})" if changed else "")
                + "; resuming it would train nothing and return its old weights. " + remedy
            )
        if changed:
            raise ValueError(
                f"{where} holds an unfinished {old['trainer']} run with other settings: "
                + "; ".join(changed) + ". Rerun with the same arguments to resume it. " + remedy
            )

    def clear(self):
        """Remove the run's own files from the directory (nothing else in it)."""
        for name in self.owned:
            target = os.path.join(self.path, name)
            check_removable(target, "checkpoint_dir: ")  # never the cwd, an ancestor, home or root
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.remove(target)

    def begin(self):
        """Write the record of an unfinished run (kept as it is when resuming)."""
        if not os.path.exists(self.record_path):
            self._write(False)

    def finish(self):
        """Mark the run finished: a later call with this directory refuses to reuse it."""
        self._write(True)

    def _write(self, finished):
        self.record["finished"] = finished
        with atomic_file(self.record_path) as tmp:
            with open(tmp, "w") as f:
                json.dump(self.record, f, indent=1)

    def subdir(self, name):
        path = os.path.join(self.path, name)
        os.makedirs(path, exist_ok=True)
        return path


def _differences(old, new, prefix=""):
    """"key=old there, new in this call" for every differing leaf of two nested dicts, keys
    dotted (config.base_lr), so a changed setting is named rather than a whole dict printed."""
    out = []
    for key in [*new, *(k for k in old if k not in new)]:
        then, now = old.get(key), new.get(key)
        if isinstance(then, dict) and isinstance(now, dict):
            out += _differences(then, now, f"{prefix}{key}.")
        elif then != now:
            out.append(f"{prefix}{key}={then!r} there, {now!r} in this call")
    return out


def remove_stale(directory):
    """Delete temporary files a killed writer left behind (never read: atomic_file names them)."""
    for name in os.listdir(directory):
        if name.startswith(tuple(f".{n}." for n in (RECORD, BACKUP))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


def restore(model, directory):
    """Load the backup in `directory` into the compiled `model` (weights and optimizer);
    return the step it was taken at, 0 when there is none."""
    remove_stale(directory)
    path = os.path.join(directory, BACKUP)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (OSError, ValueError) as e:
        raise WeightsError(
            f"checkpoint_dir: the backup {path} does not load into {model.name} ({str(e)[:300]}). "
            "Pass a new checkpoint_dir, or overwrite=True to discard it and start afresh."
        ) from e
    with h5py.File(path, "r") as f:
        saved = f.get(RANDOM_STATE)
        states = random_states(model)
        if saved is not None and len(saved) == len(states):
            for i, variable in enumerate(states):
                variable.assign(saved[str(i)][()])
    step = int(model.optimizer.iterations)
    log.info("resuming %s from %s at step %d", model.name, path, step)
    return step


def random_states(model):
    """The states of the model's seed generators (dropout, stochastic depth): variables that
    `save_weights` leaves out, but that a resumed run needs to draw what an uninterrupted one does."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save(model, directory):
    """Write `model`'s weights, optimizer and seed-generator states to `directory` in one atomic step."""
    path = os.path.join(directory, BACKUP)
    with atomic_file(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            group = f.create_group(RANDOM_STATE)
            for i, variable in enumerate(random_states(model)):
                group[str(i)] = np.asarray(variable)


class EpochBackup(keras.callbacks.Callback):
    """Back up after every whole epoch, atomically (see the module docstring).

    A run stopped inside an epoch (a non-finite loss) is not backed up there: its
    weights are the ones that failed, and resuming must start from a whole epoch.
    `on_backup` (optional) is called with the step after each backup.
    """

    def __init__(self, directory, steps_per_epoch, on_backup=None):
        super().__init__()
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.on_backup = on_backup

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations)
        if step == 0 or step % self.steps_per_epoch:
            return
        save(self.model, self.directory)
        if self.on_backup is not None:
            self.on_backup(step)
