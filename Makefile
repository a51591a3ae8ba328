# Everything runs inside .venv; torch is pinned to the local CPU wheel (2.13.0),
# an unpinned torch would pull several GB of CUDA packages.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck imports install clean browser screenshot llamacpp

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

# A real OpenAI-compatible server for the backend tests (tests/backends): llama-cpp-python's
# server, built from its sdist (the registry has no wheel; it vendors llama.cpp and its
# convert_hf_to_gguf.py, which the tests use on the tiny models). Built once into
# .cache/llamacpp/wheels (about 6-10 min on 2 cores), then installed from there in seconds.
LLAMACPP_VERSION := 0.3.36
LLAMACPP_DIR := .cache/llamacpp
LLAMACPP_SDIST := $(LLAMACPP_DIR)/llama_cpp_python-$(LLAMACPP_VERSION).tar.gz
LLAMACPP_WHEEL := $(LLAMACPP_DIR)/wheels/llama_cpp_python-$(LLAMACPP_VERSION)-py3-none-linux_x86_64.whl
LLAMACPP_STAMP := $(VENV)/.llamacpp-$(LLAMACPP_VERSION)
# portable (AVX2) build without OpenMP, examples, tools or the C++ server: only the library
LLAMACPP_CMAKE := -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

$(LLAMACPP_SDIST): $(BIN)/python
	mkdir -p $(LLAMACPP_DIR)
	$(BIN)/pip download -q llama-cpp-python==$(LLAMACPP_VERSION) --no-binary :all: --no-deps -d $(LLAMACPP_DIR)

$(LLAMACPP_WHEEL): $(LLAMACPP_SDIST) $(STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/pip wheel -q --no-deps -w $(LLAMACPP_DIR)/wheels $(LLAMACPP_SDIST)

$(LLAMACPP_STAMP): $(LLAMACPP_WHEEL)
	$(BIN)/pip install -q --find-links $(LLAMACPP_DIR)/wheels 'llama-cpp-python[server]==$(LLAMACPP_VERSION)'
	touch $(LLAMACPP_STAMP)

llamacpp: $(LLAMACPP_STAMP)

test: $(STAMP) lint typecheck imports browser llamacpp
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		HARNESS_LLAMACPP_SRC=$(CURDIR)/$(LLAMACPP_SDIST) $(BIN)/pytest -q

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache .mypy_cache .ruff_cache
