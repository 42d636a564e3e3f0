# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Fashion-MNIST, the real dataset of the fine-tuning checks, from Debian's package.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup setup-demo demo test test-backends test-fast bench docs dist clean

# make test (and bench, docs, dist): every extra, the reference implementations, the tools.
setup: $(STAMP) $(FASHION_MNIST)
# make demo: only what the demo uses (the tutorials extra: TensorFlow, torch, scikit-image, Lite0's weights).
setup-demo: $(DEMO_STAMP) $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

# setuptools<81: the test extra's tensorflow_hub 0.16 imports pkg_resources.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -e ".[tutorials]"
	touch $(DEMO_STAMP)

demo: setup-demo
	$(PY) examples/demo.py

# Everything, the `slow` checks included (CI runs this).
# One pytest run per tier: a single process over the whole suite grew past the machine's
# 24 GiB (TensorFlow keeps graphs and allocator pools from hundreds of models) and was
# OOM-killed; each tier alone stays well under it. Each tier runs on two pytest-xdist workers
# (much of a test is single-threaded Python: tracing, graph building, subprocess start-up); by
# default a module's tests stay on one worker, some modules spread theirs (the harness per
# variant, its largest variants one at a time): tests/conftest.py.
TIERS := tests/unit tests/families tests/parity tests/integration tests/backends
XDIST := -n 2 --dist loadgroup
test: setup
	for tier in $(TIERS); do $(PY) -m pytest -q $(XDIST) --durations=15 $$tier || exit 1; done
	$(MAKE) test-backends

# The same model checks on JAX and PyTorch, each backend in its own pytest process
# (conftest.py honours KERAS_BACKEND): the harness on one small variant per family, parity
# against timm, the real Lite0 weights on photos, mixed precision. tests/backends/ itself
# (no TensorFlow imported on JAX/torch) runs in the TensorFlow suite above: it starts both.
BACKENDS ?= jax torch
# The harness's variants there: the smallest registered variant of each family (tests/toys.py).
BACKEND_VARIANTS := smallest
# The tests marked `backends` (pytest.mark.backends: each family marks its own parity tests;
# the harness and mixed precision whole): tests/families and tests/parity, on JAX and PyTorch.
BACKEND_TESTS := tests/families tests/parity
test-backends: setup
	for backend in $(BACKENDS); do \
	  KERAS_BACKEND=$$backend KERAS_BIGTRANSFER_HARNESS_VARIANTS=$(BACKEND_VARIANTS) \
	    $(PY) -m pytest -q $(XDIST) --durations=10 -p no:cacheprovider -m backends $(BACKEND_TESTS) || exit 1; \
	done

# The quick loop while developing.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Speed against keras.applications and timm on every backend, 224 px, batch 16, and the first
# steps (bench/results_cpu.{json,md}, about 50 min on 2 quiet cores), then docs/benchmarks.md's
# tables from that JSON. On a GPU machine: $(PY) bench/gpu.py (its docstring: fitting 8 minutes).
bench: setup
	$(PY) bench/run.py
	$(PY) bench/report.py --docs

# The documentation site, every warning an error (site/; `mkdocs serve` to browse it live).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# The sdist and wheel in $(DIST), their metadata checked as the package index will (twine check).
# --no-isolation builds with the environment's setuptools and wheel (both in .[test]) instead of
# downloading a fresh build environment: offline, and seconds instead of a minute in the tests
# (tests/integration/test_dist.py runs this target). PY= picks another environment.
DIST ?= dist
dist: setup
	rm -rf $(DIST) build
	$(PY) -m build --no-isolation --outdir $(DIST) .
	$(PY) -m twine check --strict $(DIST)/*

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache
