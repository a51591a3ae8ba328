# Everything runs inside .venv; torch is pinned to the local CPU wheel (2.13.0),
# an unpinned torch would pull several GB of CUDA packages.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck imports install clean browser screenshot

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/harness demo

# The README's picture (docs/report.png): the demo's naive report in headless Chromium.
screenshot: $(STAMP) browser
	$(BIN)/python -m harness.demo.screenshot reports/demo/naive/report.html docs/report.png

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(wildcard harness finetune)

# The import contracts in pyproject.toml ([tool.importlinter]): stages import each other
# in data-flow order only, and no module cycles.
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

# Chromium for the browser test of the HTML report (tests/report/test_browser.py):
# installed with apt-get when running as root; never fails the build (the test skips).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver); } \
		|| echo "chromium not installed: the browser test will be skipped"

test: $(STAMP) lint typecheck imports browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache .mypy_cache .ruff_cache
