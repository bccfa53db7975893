# Two commands on a fresh machine with Python 3.11: `make test` and `make demo`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean

# Reinstall only when the project's declared dependencies change.
$(STAMP): pyproject.toml sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e ./sandbox
	touch $(STAMP)

# Gates of `make test`: the import contracts, ruff (with import sorting) everywhere, mypy on the product.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check operator sandbox tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/oscar-batch-demo

# The benchmarks also need the `bench` extra (matplotlib, for the makespan plot).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]' -e ./sandbox
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache

# The real tier: etcd, kube-apiserver, kube-scheduler, kube-controller-manager and MinIO built from their Go
# modules (tools/real/) into ~/.cache/oscar-batch/real/bin, rebuilt only when the pins change; then tests/real
# against them, where a missing binary fails instead of skipping. docs/REAL_TIER.md tells more.
.PHONY: real-bin test-real
real-bin:
	tools/real/build.sh

test-real: $(STAMP) real-bin
	OSCAR_REAL_REQUIRED=1 $(BIN)/pytest tests/real
