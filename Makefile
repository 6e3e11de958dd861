# The two commands of the quickstart are `make demo` and `make test`.
# Everything installs into .venv in the repository root.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
STAMP_BENCH := $(VENV)/.installed-bench

.PHONY: demo test lint fmt install install-dev clean bench bench-quick synth reliability

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,aws,postgres,infra]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,aws,postgres,infra,bench]'
	touch $@ $(STAMP_DEV) $(STAMP_RUN)

install: $(STAMP_RUN)

install-dev: $(STAMP_DEV)

demo: $(STAMP_RUN)
	$(BIN)/ihub demo

# Three pytest workers (pytest-xdist): most tests wait on processes, sockets and
# servers rather than compute, so even two cores run the suite about three times
# faster. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3
test: $(STAMP_DEV)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The reliability suite (docs/reliability.md) with larger counts, every scenario on
# every backend; results are appended to reliability-results.jsonl.
RELIABILITY_SCALE ?= 5
reliability: $(STAMP_DEV)
	rm -f reliability-results.jsonl
	IHUB_RELIABILITY_SCALE=$(RELIABILITY_SCALE) IHUB_RELIABILITY_REPORT=$(CURDIR)/reliability-results.jsonl \
		$(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS)
	$(BIN)/python tests/reliability/table.py reliability-results.jsonl

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests infra bench
	$(BIN)/ruff format --check src tests infra bench
	$(BIN)/mypy

fmt: $(STAMP_DEV)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (docs/benchmarks.md): never part of the tests or of CI.
bench: $(STAMP_BENCH)
	$(BIN)/python -m bench

bench-quick: $(STAMP_BENCH)
	$(BIN)/python -m bench --quick

# The AWS CDK app (docs/aws-deploy.md): CloudFormation into infra/cdk.out,
# offline (no AWS account, no CDK CLI; needs node). Context parameters go in
# SYNTH_ARGS, e.g. make synth SYNTH_ARGS='-c lambdaBundle=build/lambda'.
synth: $(STAMP_DEV)
	cd infra && ../$(BIN)/python app.py $(SYNTH_ARGS)
