# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TOOLS_STAMP := $(VENV)/.tools-stamp

.PHONY: test lint bench demo tools clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The reference tools the tests compare against; apt-installed when missing and root.
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP): .ci/install-tools | $(STAMP)
	bash .ci/install-tools
	touch $@

test: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vgpubuild tests bench
	$(VENV)/bin/mypy

bench: $(STAMP) $(TOOLS_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

demo: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m vgpubuild demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
