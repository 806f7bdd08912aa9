# kubeling: `make up` starts a local cluster, `make test` runs every test.
# Both install what they need (Debian packages, the virtualenv, local images)
# and start dockerd when none is running.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_HOME := $(CURDIR)/.cluster-test
PYTEST_ARGS ?=

.PHONY: deps venv up down status clean test unit proto

deps:
	@bash deploy/install-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: deps $(VENV)/.installed

up: venv
	@$(PY) -m deploy up $(if $(NODES),--nodes $(NODES)) $(if $(filter 1 true yes,$(HA)),--ha) $(if $(PROXY_MODE),--proxy-mode $(PROXY_MODE))

down:
	@if [ -x $(PY) ]; then $(PY) -m deploy down; fi

status: venv
	@$(PY) -m deploy status

clean:
	@if [ -x $(PY) ]; then $(PY) -m deploy clean; else rm -rf .cluster; fi

proto: venv
	@$(PY) proto/generate.py

unit: venv
	@$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# Unit, integration and e2e tests. The e2e tests start their own clusters in
# temporary state directories; dockerd is started for the run if none answers
# and stopped afterwards.
test: venv
	@bash deploy/install-deps.sh --test
	@KUBELING_HOME=$(TEST_HOME) $(PY) -m deploy prepare
	@set +e; $(PY) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS); rc=$$?; \
	  KUBELING_HOME=$(TEST_HOME) $(PY) -m deploy unprepare; rm -rf $(TEST_HOME); exit $$rc
