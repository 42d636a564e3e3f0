"""`make test` runs each tier with `pytest -n 2 --dist loadgroup`, and tests/conftest.py groups a
module's tests (the family harness: a variant's) onto one worker, so module fixtures build once.
pytest 9.2 with pytest-xdist 3.8 dropped the groups without a word (pytest-dev/pytest-xdist#1386):
every harness variant was built twice and CI grew by minutes. This checks the installed pair."""

import os
import subprocess
import sys
import textwrap

from tests.toys import ROOT


def test_a_modules_tests_share_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text(open(os.path.join(ROOT, "tests", "conftest.py"), encoding="utf-8").read())
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text(textwrap.dedent(f"""
            import os
            import pytest

            @pytest.mark.parametrize("i", range(4))
            def test_worker(i):
                with open(os.path.join({str(tmp_path)!r}, "{name}-%d" % i), "w") as f:
                    f.write(os.environ["PYTEST_XDIST_WORKER"])
        """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                          "loadgroup", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for name in ("a", "b"):
        workers = {(tmp_path / f"{name}-{i}").read_text() for i in range(4)}
        assert len(workers) == 1, f"test_{name}.py ran on {sorted(workers)}: --dist loadgroup ignored its group"
