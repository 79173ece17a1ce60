# The README's two commands:
#   make serve   set up a virtualenv, build the bundled example model, serve it on :8080
#   make test    set up a virtualenv with the test extras and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8080

.PHONY: serve test setup setup-dev example bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

setup: $(PY)
	$(PIP) install --quiet -e '.[server]'

setup-dev: $(PY)
	$(PIP) install --quiet -e '.[server,redis,aerospike,dev]'

examples/model/saved_model.pb: examples/build_model.py | setup
	$(PY) examples/build_model.py examples/model

example: examples/model/saved_model.pb

serve: setup example
	$(VENV)/bin/mly-fast serve examples/config.yaml --port $(PORT)

test: setup-dev
	$(PY) -m pytest

bench: setup-dev
	$(PY) bench/bench_native.py

clean:
	rm -rf $(VENV) build *.egg-info mly/_native/*.c mly/_native/*.so examples/model
