# Every target sets itself up: a fresh clone needs nothing but python3 >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench conformance clean bytecode

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Byte-compile up front: where PYTHONDONTWRITEBYTECODE is set, every start would
# otherwise compile the package again (~100 ms of `conveyor run`'s start-up).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src/conveyor

run: bytecode
	@$(BIN)/python demo/serve_demo.py

test: bytecode
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory conformance

conformance: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python ../shared/conformance/check.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench demo
	$(BIN)/ruff format --check src tests bench demo
	$(BIN)/mypy
	$(BIN)/lint-imports

BENCHMARKS = bench/reference_queue.py bench/local_run.py bench/throughput.py bench/runner_job.py bench/server_job.py

bench: bytecode  # bench/compare.py compares two commits: run it by hand
	@for b in $(BENCHMARKS); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
