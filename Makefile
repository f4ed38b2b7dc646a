# LogiFlow: `make run` runs the whole stack on embedded defaults; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: setup run test bench lint-imports clean

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LogiFlow needs Python 3.11+"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)
	@mkdir -p var/media var/celery

run: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) scripts/run_stack.py

lint-imports: setup
	$(VENV)/bin/lint-imports

test: setup lint-imports
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/relay.py
	$(PY) bench/invoicing.py

clean:
	rm -rf $(VENV) var
