# Systole: two commands on a fresh machine.
#   make test   create/reuse .venv from requirements.lock, then run every test
#   make demo   the main job: generate the Verilog, run the demo
#   make bench  measure the accelerator (decode efficiency, prefill, resources)
# Everything installed comes from requirements.lock (exact pins, --no-deps), so a
# package the lock does not name is never installed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.systole-installed
PRESET ?= kv260
JOBS   ?= 2
# Debian tools the tests use, as `command-or-file:package` pairs; `make deps` installs the
# package when the command is not on PATH and no such file exists.
DEB_TOOLS := aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu \
             /usr/aarch64-linux-gnu/include/stdio.h:libc6-dev-arm64-cross \
             dtc:device-tree-compiler tclsh:tcl /usr/include/lz4.h:liblz4-dev \
             /usr/include/zlib.h:zlib1g-dev strace:strace
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: venv test demo verilog bench clean distclean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found; install python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "error: $(PYTHON) is not Python 3.11 (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps --require-virtualenv -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --require-virtualenv -e .
	$(PY) -m pip check
	touch $@

# loadgroup keeps each xdist_group (one simulator build, one conversion) on one worker;
# the lock's pytest 9.1.1 is the last that keeps it with pytest-xdist 3.8
# (tests/test_xdist_groups.py).
test: $(STAMP) deps
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=25

demo: $(STAMP)
	$(PY) -m gen.demo --preset $(PRESET)

verilog: $(STAMP)
	$(PY) -m gen.verilog --preset $(PRESET)

bench: $(STAMP)
	$(PY) -m gen.bench

# Install the Debian packages of DEB_TOOLS whose command is missing (no-op otherwise).
.PHONY: deps
deps:
	@missing="$$(for pair in $(DEB_TOOLS); do { command -v "$${pair%%:*}" || test -e "$${pair%%:*}"; } >/dev/null 2>&1 || echo "$${pair#*:}"; done)"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else echo "deps: all Debian tools present"; fi

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
