# Quickstart: `make demo` and `make test` each install what they need (uv, the venv, MariaDB).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY_VERSION ?= 3.11
APT_PACKAGES := mariadb-server mariadb-client libmariadb-dev pkg-config
ROWS ?= 1000000
RUN = $(UV) run --frozen --all-extras

.PHONY: help deps system-deps uv venv demo test test-py312 has-py312 lint typecheck schema bench bench-dagbag bench-throughput clean

help:
	@echo "make demo   - run every demo entity DAG through Airflow on the embedded default (SQLite, no AWS)"
	@echo "make test   - lint, type-check and run every test (starts its own MariaDB and moto servers)"
	@echo "make bench  - DagBag load time vs dag-factory, and 1M-row MariaDB throughput and peak RSS"

# System packages: MariaDB server (tests) and the client headers mysqlclient compiles against.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --break-system-packages --user uv

venv: system-deps uv
	@$(UV) sync --frozen --all-extras --quiet

deps: venv

demo: venv
	@$(RUN) python demo/run_demo.py

test: venv
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy
	@$(RUN) pytest

# MWAA runs Python 3.12: the same lock, a second venv, every test but the slow demo.
# A Python 3.12 that runs (a pyenv shim named python3.12 may exist and still fail).
PY312 ?= $(shell for p in $$(command -v python3.12) $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
	"$$p" -c "" >/dev/null 2>&1 && { echo "$$p"; break; }; done)
has-py312:
	@test -n "$(PY312)"
test-py312: system-deps uv
	@if [ -z "$(PY312)" ]; then echo "python3.12 not found (set PY312=/path/to/python3.12)"; exit 1; fi
	@UV_PROJECT_ENVIRONMENT=.venv-py312 $(UV) sync --frozen --all-extras --quiet --python $(PY312)
	@UV_PROJECT_ENVIRONMENT=.venv-py312 $(UV) run --frozen --all-extras --python $(PY312) pytest -m "not slow" -q

lint:
	@$(RUN) ruff check . && $(RUN) ruff format --check .

typecheck:
	@$(RUN) mypy

schema: venv
	@$(RUN) etlctl schema -o include/entities/entity.schema.json

bench: bench-dagbag bench-throughput

bench-dagbag: venv
	@$(UV) sync --frozen --all-extras --group bench --quiet
	@$(RUN) --group bench python bench/dagbag_load.py

bench-throughput: venv
	@$(RUN) python bench/stage_throughput.py --rows $(ROWS)

clean:
	rm -rf .demo .bench .test-artifacts
