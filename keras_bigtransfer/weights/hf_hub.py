"""Weights from the Hugging Face Hub: timm's handles, through `huggingface_hub` and its cache.

    hf-hub:timm/resnetv2_50x1_bit.goog_in21k_ft_in1k      (timm's handle)
    hf://timm/vit_base_patch16_224.augreg2_in21k_ft_in1k   (the same, URL style)
    hf-hub:timm/tf_efficientnet_b0.ns_jft_in1k@<revision>  (a branch, tag or commit)

`download(handle)` returns the local path of the repository's weights: `model.safetensors`
when the repository has it, else `pytorch_model.bin` (read with `torch.load(weights_only=True)`).
Files live in the Hub's own cache (`HF_HUB_CACHE`, or `HF_HOME/hub`, default
`~/.cache/huggingface/hub`: `models--<org>--<name>/snapshots/<commit>/...`, `refs/<branch>`),
shared with timm, transformers and every other Hub user. `HF_HUB_OFFLINE=1` (or
`KERAS_BIGTRANSFER_OFFLINE=1`) reads that cache only; both are read at call time.

This module names no family: the arrays keep timm's key names, and each family's
`convert.py` maps them.
"""

import json
import os

from keras_bigtransfer.errors import DownloadError, OfflineError
from keras_bigtransfer.extras import require

PREFIXES = ("hf-hub:", "hf://")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_handle(value):
    """Whether `value` is a Hugging Face Hub handle (`hf-hub:org/name` or `hf://org/name`)."""
    return isinstance(value, str) and value.strip().lower().startswith(PREFIXES)


def parse(handle, revision=None):
    """`hf-hub:org/name[@revision]` -> (repo_id, revision or None).

    An explicit `revision=` wins over one written in the handle.
    """
    value = handle.strip()
    prefix = next((p for p in PREFIXES if value.lower().startswith(p)), None)
    if prefix is None:
        raise ValueError(f"{handle!r} is not a Hugging Face Hub handle (hf-hub:org/name or hf://org/name).")
    rest = value[len(prefix):].strip("/")
    rest, _, pinned = rest.partition("@")
    parts = rest.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"{handle!r}: a Hugging Face Hub handle names one repository, org/name "
            "(e.g. hf-hub:timm/resnetv2_50x1_bit.goog_in21k_ft_in1k)."
        )
    return rest, revision or pinned or None


def _check_revision(revision):
    if not isinstance(revision, str) or not revision.strip() or "@" in revision:
        raise ValueError(f"revision= must be a branch, tag or commit of a Hugging Face Hub repository "
                         f"(e.g. 'main' or a commit hash); got {revision!r}.")
    return revision.strip()


def pin(weights, revision):
    """`weights` with `revision=` written into it: `hf-hub:org/name@revision`.

    `revision=` is the keyword timm, keras-hub and huggingface_hub users pass; here it becomes
    the handle's `@revision`, so one string names the weights from then on.

    Args:
        weights: a Hub handle (`hf-hub:org/name[@rev]`, `hf://org/name[@rev]`), or a catalogue
            tag whose file is on the Hub (its URL is such a handle).
        revision: a branch, tag or commit; None returns `weights` as it is.

    Raises:
        ValueError: `weights` is not Hub weights (None, a local file, a catalogue tag of
            another source, a TF Hub or Kaggle handle), `revision` is empty, or the handle
            already names another revision. Nothing is downloaded before.
    """
    if revision is None:
        return weights
    revision = _check_revision(revision)
    handle = weights if is_handle(weights) else None
    if handle is None and isinstance(weights, str) and not os.path.exists(weights):
        from keras_bigtransfer.weights import catalogue

        entry = catalogue.find(weights)
        if entry is not None and is_handle(entry.url):
            handle = entry.url
    if handle is None:
        raise ValueError(
            f"revision={revision!r} applies to weights from the Hugging Face Hub (hf-hub:org/name, "
            f"hf://org/name, or a catalogue tag whose file is on the Hub); weights={weights!r} is "
            "not one. Drop revision=, or name the Hub repository."
        )
    repo_id, pinned = parse(handle)
    if pinned is not None and pinned != revision:
        raise ValueError(
            f"{handle!r} names revision {pinned!r} and revision={revision!r} names another; "
            "give the revision once."
        )
    return f"hf-hub:{repo_id}@{revision}"


def catalogue_entry(weights):
    """The catalogue entry of the repository a Hub handle names at a revision
    (`hf-hub:org/name@rev` -> the entry of `hf-hub:org/name`); None for anything else."""
    if not is_handle(weights):
        return None
    from keras_bigtransfer.weights import catalogue

    return catalogue.find("hf-hub:" + parse(weights)[0])


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline():
    """`HF_HUB_OFFLINE` (huggingface_hub's switch) or `KERAS_BIGTRANSFER_OFFLINE`, read now."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or _env_true("KERAS_BIGTRANSFER_OFFLINE")


def cache_dir():
    """The Hub cache, from the environment as it is now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _hub():
    return require("huggingface_hub", extra="hf", for_what="A Hugging Face Hub handle (hf-hub:)")


def _fetch(repo_id, filename, revision):
    """One file of the repository through huggingface_hub; None when the repository lacks it."""
    hub = _hub()
    from huggingface_hub import errors

    try:
        return hub.hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir(), local_files_only=offline(),
            library_name="keras_bigtransfer",
        )
    except errors.LocalEntryNotFoundError:
        return None  # not in the cache (offline), or the repository has no such file
    except errors.EntryNotFoundError:
        return None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as e:
        raise ValueError(f"hf-hub:{repo_id}{'@' + revision if revision else ''}: {e}") from None
    except errors.HfHubHTTPError as e:
        raise DownloadError(f"hf-hub:{repo_id}: {e}") from e


def download(handle, revision=None):
    """The local path of a Hub repository's weights (`model.safetensors`, else `pytorch_model.bin`).

    Args:
        handle: `hf-hub:org/name[@revision]` or `hf://org/name[@revision]`.
        revision: a branch, tag or commit (default: the handle's, else `main`).

    Raises:
        OfflineError: offline and neither file is in the cache; says where it would be.
        ValueError: the repository or revision does not exist.
        DownloadError: the Hub kept failing.
    """
    repo_id, revision = parse(handle, revision)
    for filename in WEIGHT_FILES:
        path = _fetch(repo_id, filename, revision)
        if path is not None:
            return path
    where = os.path.join(cache_dir(), "models--" + repo_id.replace("/", "--"))
    if offline():
        raise OfflineError(
            f"hf-hub:{repo_id}: offline (HF_HUB_OFFLINE / KERAS_BIGTRANSFER_OFFLINE) and neither "
            f"{' nor '.join(WEIGHT_FILES)} of revision {revision or 'main'} is in the Hugging Face "
            f"cache ({where}). Download it once online, e.g. `hf download {repo_id}`."
        )
    raise ValueError(f"hf-hub:{repo_id}: the repository has neither {' nor '.join(WEIGHT_FILES)}.")


def config(handle, revision=None):
    """The repository's `config.json` (timm's: architecture, num_classes, pretrained_cfg), or None."""
    repo_id, revision = parse(handle, revision)
    path = _fetch(repo_id, "config.json", revision)
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)
