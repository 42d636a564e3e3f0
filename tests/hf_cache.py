"""A Hugging Face Hub cache laid out on disk as huggingface_hub lays it out, for offline tests.

    <cache>/models--<org>--<name>/blobs/<sha256>              the file's bytes
    <cache>/models--<org>--<name>/snapshots/<commit>/<file>   a relative symlink to the blob
    <cache>/models--<org>--<name>/refs/main                   the commit (no newline)

(huggingface_hub `file_download.py`: `_cache_commit_hash_for_specific_revision`,
`_create_symlink`, `try_to_load_from_cache`.) With `HF_HUB_OFFLINE=1`, `hf_hub_download`
answers from these files alone, for us and for timm.
"""

import hashlib
import os
import shutil
import tempfile

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_files(cache, repo_id, files, commit=COMMIT, ref="main"):
    """Put {filename: source path} into `cache` as revision `commit` of `repo_id`; return the
    snapshot folder."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(snapshot, exist_ok=True)
    for filename, source in files.items():
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        blob = os.path.join(repo, "blobs", digest.hexdigest())
        if not os.path.exists(blob):
            shutil.copyfile(source, blob)
        link = os.path.join(snapshot, filename)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    if ref is not None:
        os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
        with open(os.path.join(repo, "refs", ref), "w") as f:
            f.write(commit)
    return snapshot


def add_timm_model(cache, repo_id, model, commit=COMMIT, ref="main", safetensors=True):
    """timm's own writer (`save_for_hf`: config.json and model.safetensors, or
    pytorch_model.bin with safetensors=False) into `cache` as `repo_id`."""
    from timm.models._hub import save_for_hf

    with tempfile.TemporaryDirectory() as folder:
        save_for_hf(model, folder, safe_serialization=safetensors)
        files = {name: os.path.join(folder, name) for name in os.listdir(folder)}
        return add_files(cache, repo_id, files, commit=commit, ref=ref)


def use_cache(monkeypatch, cache):
    """Point huggingface_hub (read at import, so patched too) and ours at `cache`, offline."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
