# Quickstart: `make demo` and `make test` each install what they need (uv, the venv, MariaDB).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# mysqlclient has no Linux wheel: it compiles (gcc, the Python headers, pkg-config + libmariadb-dev).
# python3-pip installs uv where it is missing.
APT_PACKAGES := mariadb-server mariadb-client libmariadb-dev pkg-config gcc python3-dev python3-pip
# The UI test's browser: Debian's chromium at /usr/bin/chromium (never a downloaded browser).
APT_TEST_PACKAGES := chromium
ROWS ?= 2000000
RUN = $(UV) run --frozen --all-extras

.PHONY: help deps system-deps test-deps uv venv demo airflow deploy-mwaa test test-unit test-deploy test-py312 has-py312 lint typecheck schema bench bench-dagbag bench-etl bench-survey bench-throughput bench-chaos bench-entities-page bench-peers mutation clean

help:
	@echo "make demo   - run every demo entity DAG through Airflow on the embedded default (SQLite, no AWS)"
	@echo "make test   - lint, type-check and run every test (starts its own MariaDB and moto servers), then test-deploy"
	@echo "make test-unit - lint, type-check and the unit tests only (pytest -m \"not integration\": no MariaDB, moto, Airflow processes or Docker)"
	@echo "make test-deploy - the deploy suite alone: the job image built and run on a real Docker engine, MWAA's package set"
	@echo "make mutation [MUTANTS=globs] [MUTATION_TESTS=tests] - mutmut over chunks, lease, the codec, dedupe/load_target (slow; not CI)"
	@echo "make bench  - DagBag load time vs dag-factory, the 2M-row MariaDB ETL pipeline (bench-etl), the survey benches"
	@echo "make bench-peers [PEERS_ROWS=2000000] - the pipeline against Sling and dlt (own venv in .bench/peers-venv), targets checked exactly"
	@echo "make bench-chaos [CHAOS_ROWS=1000000] - stage kills, server crashes and lease takeovers on MariaDB, target checked exactly"
	@echo "make bench-entities-page - the UI's Entities page for 1,000 entities x 100 runs (SQLite; moto DynamoDB, Query only)"
	@echo "make airflow - the Airflow 3 UI on http://localhost:8080 (admin/admin) on the embedded default, no Docker"
	@echo "make deploy-mwaa BUCKET=... [MWAA_ENV=...] [SETTINGS=file] [DRY_RUN=1] - sync dags/, include/, plugins.zip to MWAA's bucket"

# System packages: MariaDB server (tests) and the client headers mysqlclient compiles against.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv 2>/dev/null \
	  || python3 -m pip install --quiet --break-system-packages --user uv
	@command -v $(UV) >/dev/null 2>&1 || { echo "uv not found at $(UV) after installing it"; exit 1; }

venv: system-deps uv
	@$(UV) sync --frozen --all-extras --inexact --quiet

deps: venv

demo: venv
	@$(RUN) python demo/run_demo.py

# api-server, scheduler, dag-processor and triggerer under .airflow-local/ (RESET=1 starts afresh).
airflow: venv
	@$(RUN) python deploy/local/airflow_local.py $(if $(RESET),--reset)

deploy-mwaa: venv
	@test -n "$(BUCKET)" || { echo "usage: make deploy-mwaa BUCKET=<environment bucket> [MWAA_ENV=name] [SETTINGS=file] [DRY_RUN=1]"; exit 2; }
	@$(RUN) python deploy/mwaa/deploy.py --bucket "$(BUCKET)" $(if $(MWAA_ENV),--environment "$(MWAA_ENV)") $(if $(SETTINGS),--settings "$(SETTINGS)") $(if $(DRY_RUN),--dry-run)

test-deps: venv
	@missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing:$$missing"; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1; } \
	    || echo "could not install$$missing from apt: the UI test needs /usr/bin/chromium (it fails under CI=true, skips otherwise)"; \
	fi

test: test-deps
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy
	@$(RUN) pytest
	@$(MAKE) --no-print-directory test-deploy

# The tests that start no server or process of their own (tests/conftest.py marks the others
# `integration`): no MariaDB, moto, Airflow processes or Docker.
test-unit: venv
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy
	@$(RUN) pytest -m "not integration"

# The deploy suite (tests/deploy/): the job image built and run, MWAA's package set, on a real Docker
# engine that with-docker.sh installs and starts when missing (and stops if it started it). The
# images no registry serves here are local stand-ins (deploy/local-images/build.py), cached by hash.
test-deploy: venv
	@deploy/local-images/with-docker.sh env DEPLOY_TESTS=1 $(RUN) pytest tests/deploy

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

bench: bench-dagbag bench-etl bench-survey

bench-dagbag: venv
	@$(UV) sync --frozen --all-extras --group bench --quiet
	@$(RUN) --group bench python bench/dagbag_load.py

# Every stage through etlctl against the server alone and a naive loop; ROWS may be a list: 1000000,4000000.
bench-etl: venv
	@$(RUN) python bench/etl_pipeline.py --rows $(ROWS)

# Aggregating a day of 1M survey answers (time, peak memory), and the CTR handler per 100-record batch on moto.
bench-survey: venv
	@$(RUN) python bench/nps_aggregate.py
	@$(RUN) python bench/survey_handler.py

# Not part of `make bench`: the pipeline against Sling and dlt on bench-etl's server and data, two rounds,
# the order alternating (bench/peers.py). The peers live in .bench/peers-venv (made with uv), never in uv.lock.
PEERS_ROWS ?= 2000000
bench-peers: venv
	@$(RUN) python bench/peers.py --rows $(PEERS_ROWS)

# Not part of `make bench`: SIGKILLed stages, mariadbd crashes and lease takeovers at seeded points, then
# an exact check of the target (bench/chaos.py; about 4 min at 1M rows).
CHAOS_ROWS ?= 1000000
bench-chaos: venv
	@$(RUN) python bench/chaos.py --rows $(CHAOS_ROWS)

# Not part of `make bench`: the Entities page for 1,000 entities x 100 runs, from SQLite and moto DynamoDB
# (Query only, counted with a botocore hook); moto's Query is slow, so its side has 100 entities.
bench-entities-page: venv
	@$(RUN) python bench/entities_page.py --dynamo-entities 100

# Mutation testing (mutmut, not CI, not `make test`): in .mutmut/, a copy where plugins/ is src/ (mutmut
# names modules from src/). Child processes of a test (etlctl, spawned acquirers) run the original code.
# MUTANTS: mutant name globs, default the dedupe/load_target functions, lease, chunks and the codec.
MUTANTS ?= entity_etl.runtime.chunks.* entity_etl.runtime.lease.* entity_etl.runtime.csv_codec.* \
	entity_etl.runtime.stages.dedupe.* entity_etl.runtime.stages.load_target.* \
	entity_etl.runtime.databases.base.x_replaces*
# Replaces pytest_add_cli_args_test_selection in the copied pyproject.toml (argv: the file, the tests).
define MUTATION_SELECT
import json, re, shlex, sys
path, tests = sys.argv[1], ["-m", "not mariadb", *shlex.split(sys.argv[2])]
text = open(path).read()
line = "pytest_add_cli_args_test_selection = " + json.dumps(tests)
text, n = re.subn(r"(?ms)^pytest_add_cli_args_test_selection = \[.*?^\]", lambda _: line, text)
if n != 1:
    sys.exit(f"{path}: no pytest_add_cli_args_test_selection in [tool.mutmut] to replace")
open(path, "w").write(text)
print("mutmut test selection:", " ".join(tests))
endef
export MUTATION_SELECT
# MUTATION_TESTS: test files or node ids (space-separated) that replace [tool.mutmut]'s test selection in
# the copy, e.g. MUTATION_TESTS='tests/test_lease.py tests/test_state_stores.py'; `-m "not mariadb"` stays.
MUTATION_TESTS ?=
mutation: venv
	@rm -rf .mutmut && mkdir .mutmut && cp -r tests pyproject.toml .mutmut/ && cp -r plugins .mutmut/src
	@if [ -n "$(strip $(MUTATION_TESTS))" ]; then python3 -c "$$MUTATION_SELECT" .mutmut/pyproject.toml '$(MUTATION_TESTS)'; fi
	@cd .mutmut && $(UV) run --project $(CURDIR) --frozen --all-extras \
	  --with mutmut mutmut run $(MUTANTS); \
	  $(UV) run --project $(CURDIR) --frozen --all-extras --with mutmut mutmut results

# The former name of bench-etl.
bench-throughput: bench-etl

clean:
	rm -rf .demo .bench .test-artifacts .airflow-local .mutmut
