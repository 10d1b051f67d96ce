# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: install test lint unit demo bench reliability clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the 3.x SDK beside the 2.x one (dev dependency), for the emulator's 3.x test
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/together3 'together>=3,<4'
	@touch $(STAMP)

# the demo needs only the package and its [demo] extra, not the test tooling
$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make demo: installing prefect-together-lora with its [demo] extra (moto for a local S3, numpy + safetensors to write an adapter) into $(VENV) ..."
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo]'
	@touch $(DEMO_STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check prefect_together_lora flows tests bench
	$(BIN)/mypy

# two workers (the tests mostly wait on local servers' clocks); a file's tests stay together
test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

# the reliability suite alone (its cases also run in `make test`): faults on both backends,
# hostile input from every source kind, the secrets audit; prints a table and a last line
# `reliability: <passed>/<total> cases`
reliability: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m reliability --reliability-table

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e and not slow"

demo: $(DEMO_STAMP)
	$(BIN)/python flows/demo.py

# on demand, never in `make test`; each prints a table and a last `name: key=value ...` line
bench: install
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/await_detection.py
	$(BIN)/python bench/flow_overhead.py
	$(BIN)/python bench/staging_memory.py
	$(BIN)/python bench/validate_bytes.py
	$(BIN)/python bench/eval_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
