# recbento: `make serve` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export BENTOML_DO_NOT_TRACK := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install serve test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build; then the project, whose range 2.13 satisfies.
$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,bench,ray,postgres]"
	touch $@

install: $(VENV)/.installed

serve: install  ## build the demo model if needed, then serve on :3000
	$(BIN)/bentoml serve service:Recommender --host $${HOST:-127.0.0.1} --port $${PORT:-3000}

test: install  ## lint, then the whole suite (unit, service, one real `bentoml serve`)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install  ## quality and speed benchmarks on ../shared/data (tables + plots in benchmarks/results)
	$(BIN)/python -m benchmarks.quality

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
