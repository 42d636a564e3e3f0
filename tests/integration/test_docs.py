"""The documentation site builds with every warning an error, and the README links to it."""

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


def test_site_builds_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "quickstart/index.html", "troubleshooting/index.html",
                 "api/training/index.html", "tutorials/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    # the API reference is generated from the docstrings, not written by hand
    api = (tmp_path / "site" / "api" / "training" / "index.html").read_text()
    assert "Fine-tune <code>model</code> on <code>train_data</code> with the BiT-HyperRule" in api


def test_readme_links_the_site_and_the_notebooks():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "make docs" in readme and "docs/tutorials.md" in readme
    for name in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        if name.endswith(".ipynb"):
            assert f"examples/{name}" in readme, name
