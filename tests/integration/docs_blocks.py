"""The ```python blocks of README.md, README.pypi.md and docs/*.md, and the markers that say how
the suite runs them (tests/integration/test_docs_blocks.py).

A marker is an HTML comment (invisible on GitHub, the package index and the site) on the line
just above a block (blank lines between are fine): `skip: REASON` alone, or directives separated
by ";":

    <!-- docs-test: skip: downloads BiT-M-R50x1 (400 MB) -->      never run; the reason is shown
    <!-- docs-test: backends: tensorflow -->                       only on these backends
    <!-- docs-test: xfail torch: decode_predictions crashes on torch tensors (issue 25) -->

Unmarked blocks are backend-neutral: they run on tensorflow, jax and torch. The blocks of a page
run in order in one namespace, in a fresh temporary directory, offline.

A fragment (a block on the reader's own model or data) gets a hidden setup: an HTML comment
opening with `<!-- docs-test-setup` on its own line and closing with `-->` on its own line,
above the block (above or below its marker; blank lines between are fine). Its lines are
Python, run in the page's namespace just before the block, each time the block runs, to define
what the reader would have (tiny stand-ins: the block's cost is the suite's):

    <!-- docs-test: backends: tensorflow, jax -->
    <!-- docs-test-setup
    from tests.toys import tiny_model
    model = tiny_model(num_classes=10)
    -->

    ```python
    hub.export(model, "export/my_model")
    ```

The block stays what the reader sees (the setup is shown nowhere). A setup must hold no
blank line (some Markdown renderers end an HTML block there) and no `-->`. A failing setup fails its
block, named in the traceback as `PAGE:LINE (docs-test-setup)`. A skipped block takes no setup.

`python -m tests.integration.docs_blocks PLAN.json RESULTS.json` runs a plan (what the test
writes) in this process, under the KERAS_BACKEND it was started with.
"""

import dataclasses
import glob
import json
import os
import re
import sys
import tempfile
import textwrap
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKENDS = ("tensorflow", "jax", "torch")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")
_FENCE = re.compile(r"^```(\w*)\s*$")
SETUP_OPEN, SETUP_CLOSE = "<!-- docs-test-setup", "-->"


@dataclasses.dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str = ""  # the reason it never runs
    backends: tuple = BACKENDS
    xfail: dict = dataclasses.field(default_factory=dict)  # backend: reason
    setup: str = ""  # hidden Python run just before the block (the reader's model, data)

    @property
    def id(self):
        return f"{self.page}:{self.line}"


def pages():
    """The pages whose blocks the suite runs, relative to the repository."""
    found = ["README.md", "README.pypi.md"] + sorted(glob.glob("docs/*.md", root_dir=ROOT))
    return [p for p in found if os.path.isfile(os.path.join(ROOT, p))]


def _parse_marker(text, where):
    if text.startswith("skip:"):  # the reason is the rest of the comment, ";" and all
        return {"skip": text[len("skip:"):].strip()}
    options = {}
    for directive in filter(None, (d.strip() for d in text.split(";"))):
        key, _, value = directive.partition(":")
        key, value = key.strip(), value.strip()
        if key == "backends":
            names = tuple(b.strip() for b in value.split(","))
            if not names or set(names) - set(BACKENDS):
                raise ValueError(f"{where}: backends must name some of {BACKENDS}, got {value!r}")
            options["backends"] = names
        elif key.startswith("xfail ") and value:
            for backend in key[len("xfail "):].split(","):
                if backend.strip() not in BACKENDS:
                    raise ValueError(f"{where}: xfail names an unknown backend {backend!r}")
                options.setdefault("xfail", {})[backend.strip()] = value
        else:
            raise ValueError(f"{where}: unknown docs-test directive {directive!r} "
                             "(skip: REASON; backends: a,b; xfail BACKEND[,BACKEND]: REASON)")
    return options


def blocks(page):
    """Every fenced block of `page` (top-level fences), with its marker's options and setup."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return parse(page, f.read())


def parse(page, text):
    """The fenced blocks of the Markdown `text` (`page` names it in ids and errors)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        options = _comments_above(lines, start, f"{page}:{start + 1}")
        found.append(Block(page, start + 1, fence.group(1), "\n".join(body) + "\n", **options))
        i += 1
    return found


def _comments_above(lines, start, where):
    """The options of the marker and the setup comment directly above line `start`."""
    options, j = {}, start - 1
    while j >= 0:
        line = lines[j].strip()
        marker = _MARKER.match(line)
        if not line:
            j -= 1
        elif marker and "marker" not in options:
            options["marker"] = _parse_marker(marker.group(1), where)
            j -= 1
        elif line == SETUP_CLOSE and "setup" not in options:
            opening = next((k for k in range(j - 1, -1, -1) if lines[k].strip().startswith("<!--")), None)
            if opening is None or lines[opening].strip() != SETUP_OPEN:
                break  # another comment: not ours
            body = lines[opening + 1:j]
            if not all(l.strip() for l in body):
                raise ValueError(f"{where}: a docs-test-setup comment holds a blank line "
                                 "(some Markdown renderers end an HTML block there)")
            options["setup"] = textwrap.dedent("\n".join(body)) + "\n"
            j = opening - 1
        else:
            break
    result = options.get("marker", {})
    if "setup" in options:
        if result.get("skip"):
            raise ValueError(f"{where}: a skipped block with a docs-test-setup (the setup would never run)")
        result["setup"] = options["setup"]
    return result


def _reset_keras():
    import keras

    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()


def run_plan(plan):
    """{block id: {"status": "passed" | "failed" | "not run", "detail": ..., "seconds": ...}}."""
    results = {}
    for page, page_blocks in plan.items():
        namespace = {"__name__": "__main__"}
        failed = None
        with tempfile.TemporaryDirectory(prefix="docs_blocks_") as cwd:
            os.chdir(cwd)
            for block in page_blocks:
                if failed:
                    results[block["id"]] = {"status": "not run", "detail": f"an earlier block failed ({failed})"}
                    continue
                start = time.perf_counter()
                try:
                    if block.get("setup"):
                        exec(compile(block["setup"], f"{block['id']} (docs-test-setup)", "exec"), namespace)
                    exec(compile(block["code"], block["id"], "exec"), namespace)
                except BaseException:  # noqa: B036 (SystemExit from a block is a failure too)
                    failed = block["id"]
                    detail = "".join(traceback.format_exc().splitlines(True)[-30:])
                    results[block["id"]] = {"status": "failed", "detail": detail}
                else:
                    results[block["id"]] = {"status": "passed", "detail": ""}
                results[block["id"]]["seconds"] = round(time.perf_counter() - start, 2)
            os.chdir(ROOT)
        _reset_keras()  # a page's dtype policy or session does not reach the next page
    return results


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump(run_plan(plan), f)
