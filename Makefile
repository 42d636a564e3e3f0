# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Fashion-MNIST, the real dataset of the fine-tuning checks, from Debian's package.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup demo test test-fast bench docs clean

setup: $(STAMP) $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(PY) examples/demo.py

# Everything, the `slow` checks included (CI runs this).
test: setup
	$(PY) -m pytest -q --durations=15

# The quick loop while developing.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Speed and memory against keras.applications and timm (bench/results.{json,md}).
bench: setup
	$(PY) bench/run.py

# The documentation site, every warning an error (site/; `mkdocs serve` to browse it live).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache
