"""`make dist` builds an sdist and a wheel that pass `twine check`, and the wheel holds what a
release needs: the LICENSE, the checkpoint catalogue, metadata with no backend forced."""

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

from tests.toys import ROOT

import keras_bigtransfer

# What the build reads from a checkout (a copy: the build writes build/ and *.egg-info beside it).
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "site", "*.egg-info", "__pycache__",
                                 ".pytest_cache", "*.npz", "*.keras", "bench")


def test_make_dist_builds_a_checked_release(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=IGNORED)
    dist = tmp_path / "dist"
    # -o setup: build with this environment (sys.executable) instead of creating .venv.
    result = subprocess.run(["make", "--no-print-directory", "-o", "setup", "dist", f"PY={sys.executable}",
                             f"DIST={dist}"], cwd=tree, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("PASSED") == 2, result.stdout  # twine check, sdist and wheel

    version = keras_bigtransfer.__version__
    wheel = dist / f"keras_bigtransfer-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as f:
        names = f.namelist()
        metadata = email.message_from_bytes(f.read(f"keras_bigtransfer-{version}.dist-info/METADATA"))
    assert f"keras_bigtransfer-{version}.dist-info/licenses/LICENSE" in names
    for family in ("bit", "efficientnet", "vit"):
        assert f"keras_bigtransfer/weights/catalogue/{family}.json" in names
    assert "keras_bigtransfer/data/imagenet_classes.txt" in names
    assert not [n for n in names if n.startswith("tests/")]

    assert metadata["Version"] == version and metadata["License-Expression"] == "Apache-2.0"
    required = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    names_required = {re.split(r"[<>=!;\[ ]", r)[0].lower() for r in required}
    assert names_required == {"keras", "numpy", "h5py", "pillow", "filelock", "absl-py"}, required
    assert {"tensorflow", "torch", "hf", "kaggle", "deploy", "tutorials", "docs", "test"} <= set(
        metadata.get_all("Provides-Extra"))
    assert metadata.get_all("Project-URL") and metadata.get_all("Classifier")
    # The index page links nowhere into the repository (relative links would break there).
    description = metadata.get_payload()
    assert "keras_bigtransfer" in description and not re.search(r"\]\((?!https?://)", description)

    with tarfile.open(dist / f"keras_bigtransfer-{version}.tar.gz") as f:
        sdist = f.getnames()
    assert f"keras_bigtransfer-{version}/LICENSE" in sdist
    assert os.path.basename(str(wheel)) in os.listdir(dist)
