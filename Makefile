# The README's two commands:
#   make serve   set up a virtualenv, build the bundled example model, serve it on :8080
#   make test    set up a virtualenv with the test extras, install the test services, run every test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8080

# pip runs again only when something it builds from changed (the stamps), and quietly:
# its output goes to a log that is shown only when the install fails.
INSTALL_INPUTS := pyproject.toml setup.py $(wildcard mly/_native/*.pyx mly/_native/*.pxd mly/_native/*.pxi)
PIP_LOG := $(VENV)/pip-install.log
SERVER_EXTRAS := server
DEV_EXTRAS := server,redis,aerospike,dev
define pip_install
	@echo "installing mly[$(1)] into $(VENV) (pip log: $(PIP_LOG))"
	@$(PIP) install --quiet -e '.[$(1)]' >$(PIP_LOG) 2>&1 || { cat $(PIP_LOG); exit 1; }
	@touch $@
endef

.PHONY: serve test setup setup-dev example bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip >/dev/null 2>&1

$(VENV)/.installed-server: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(SERVER_EXTRAS))

$(VENV)/.installed-dev: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(DEV_EXTRAS))

setup: $(VENV)/.installed-server

setup-dev: $(VENV)/.installed-dev

examples/model/saved_model.pb: examples/build_model.py | setup
	$(PY) examples/build_model.py examples/model

example: examples/model/saved_model.pb

serve: setup example
	$(VENV)/bin/mly-fast serve examples/config.yaml --port $(PORT)

test: setup-dev
	@bash scripts/test-services.sh
	$(PY) -m pytest

bench: setup-dev
	$(PY) bench/bench_native.py

clean:
	rm -rf $(VENV) build *.egg-info mly/_native/*.c mly/_native/*.so examples/model
