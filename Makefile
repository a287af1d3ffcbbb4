# Two commands for a fresh machine: `make fit` trains the shipped model's recipe, `make test`
# runs the test suite. Both create the virtual environment .venv first.
PYTHON ?= python3
VENV ?= .venv
PRESET ?= default
# The binary CIFAR-10 batches, if this machine has them; otherwise trainers.fit tries the other sources.
CIFAR_BIN ?= ../shared/datasets/cifar-10-batches-bin
ARGS ?=

BIN := $(VENV)/bin

.PHONY: install fit test test-fast lint clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

fit: install
	$(BIN)/python -m trainers.fit --preset $(PRESET) $(if $(wildcard $(CIFAR_BIN)),--cifar-bin $(CIFAR_BIN)) $(ARGS)

# Two workers, each test file on one of them (its module fixtures built once).
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The fast lane while working: no training runs, no TensorFlow start-ups in subprocesses.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
