import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The CUDA build of torch pulls in triton, whose extension segfaults when loaded
# after TensorFlow; loading the references first avoids it.
try:
    import torch  # noqa: F401
    import timm  # noqa: F401
except ImportError:
    pass

if os.environ["KERAS_BACKEND"] == "torch":  # make test-backends: inference checks read outputs with
    import torch  # np.asarray, which torch refuses on tensors that require grad

    torch.set_grad_enabled(False)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path, monkeypatch):
    """No test touches the network or the user's cache unless it serves the files itself."""
    monkeypatch.setenv("KERAS_BIGTRANSFER_HOME", str(tmp_path / "hub_cache"))
    monkeypatch.setenv("KERAS_BIGTRANSFER_OFFLINE", "1")
    monkeypatch.delenv("KERAS_BIGTRANSFER_MIRROR", raising=False)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(config, items):
    """Groups for `pytest -n 2 --dist loadgroup` (make test): a module's tests run on one worker,
    so module-scoped fixtures build once; a module may spread its tests with its own
    `xdist_group(item)` (the family harness does, per variant)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        spread = getattr(item.module, "xdist_group", None)
        group = (spread(item) if spread else None) or item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
    # The longest tests first (a module's `XDIST_FIRST = True`): xdist's loadgroup hands out the
    # groups with the most tests first (--loadscope-reorder, its default) and equal ones in this
    # order; a one-test, 10-minute group started last would run alone at the end of its tier.
    items.sort(key=lambda item: not getattr(item.module, "XDIST_FIRST", False))
