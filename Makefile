# nasforge developer entry points. `make test` and `make quickstart` each install from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# torch/torchvision are installed first and pinned: CI machines take these releases from local
# wheel files. Any torch >= 2.11 with its matching torchvision works: `make test TORCH_SPEC=`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test quickstart lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install -q $(TORCH_SPEC))
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check nasforge tests scripts

test: install lint
	$(BIN)/python -m pytest -q

quickstart: install
	$(BIN)/nasforge quickstart

clean:
	rm -rf $(VENV) .pytest_cache
