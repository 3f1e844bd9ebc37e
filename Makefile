# ferrolib: the whole pipeline. `make figures` and `make test` are the two commands that matter;
# both create the environment and fetch the data first, so a fresh clone needs nothing else.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3.11
# Idle OpenMP threads (torch, numba) sleep instead of spinning, even where torch loads before ferrolib.
export OMP_WAIT_POLICY ?= PASSIVE
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ferrolib-installed
BUILD := build
SMOKE := .smoke

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
EXECUTED := $(NOTEBOOKS:notebooks/%.py=$(BUILD)/notebooks/%.ipynb)
SMOKED := $(NOTEBOOKS:notebooks/%.py=$(SMOKE)/notebooks/%.ipynb)
LIBRARY := $(shell find ferrolib -name '*.py' -o -name '*.tsv') pyproject.toml
PAPERMILL := $(BIN)/papermill --cwd notebooks --log-level WARNING --request-save-on-cell-execute

.PHONY: help env data figures test smoke lab sync bench clean distclean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

env: $(STAMP) ## create .venv and install ferrolib (editable) with its notebook and test extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
	@# Compile the numba kernels into their on-disk cache now, so no run starts with a compile stall.
	$(BIN)/python -c 'from ferrolib.training.pulsed import compile_kernels; compile_kernels()'
	touch $@

data: $(STAMP) ## fetch MNIST (full, or the offline subset) and resolve the device measurements
	$(BIN)/ferrolib data fetch

figures: data $(EXECUTED) ## run every notebook in order with papermill: figures/ and results/

# Notebooks run in order: each one's executed copy depends on the previous one (02 writes data/devices for 03).
$(foreach i,$(shell seq 2 $(words $(EXECUTED))),\
  $(eval $(word $(i),$(EXECUTED)): $(word $(shell expr $(i) - 1),$(EXECUTED))))
$(foreach i,$(shell seq 2 $(words $(SMOKED))),\
  $(eval $(word $(i),$(SMOKED)): $(word $(shell expr $(i) - 1),$(SMOKED))))

$(BUILD)/notebooks/%.ipynb: notebooks/%.py $(LIBRARY) | $(STAMP)
	@mkdir -p $(@D)
	$(BIN)/jupytext --quiet --to ipynb --output $(@D)/$*.source.ipynb $<
	$(PAPERMILL) $(@D)/$*.source.ipynb $@

smoke: data $(SMOKED) ## run every notebook with its smoke parameters (outputs under .smoke/, never figures/)

$(SMOKE)/notebooks/%.ipynb: notebooks/%.py $(LIBRARY) | $(STAMP)
	@mkdir -p $(@D)
	$(BIN)/jupytext --quiet --to ipynb --output $(@D)/$*.source.ipynb $<
	$(PAPERMILL) $(@D)/$*.source.ipynb $@ -p smoke True \
	  -p output_dir $(abspath $(SMOKE))/figures -p results_dir $(abspath $(SMOKE))/results

test: data ## run the test suite (includes every notebook's smoke profile)
	status=0; $(BIN)/python -m pytest || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

sync: $(STAMP) ## pair every notebooks/*.py with an .ipynb (jupytext); the .py is the reviewed source
	$(BIN)/jupytext --sync $(NOTEBOOKS)

lab: sync ## open JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

BENCH_ARGS ?= --threads 1 2 --repeats 3
bench: data ## print training throughput of fp, sgd, mp and sps: 1 and 2 threads, ratios to fp (BENCH_ARGS)
	$(BIN)/python benchmarks/train_throughput.py $(BENCH_ARGS)

clean: ## remove executed notebooks and smoke outputs (keeps results/, figures/ and the data cache)
	rm -rf $(BUILD) $(SMOKE) notebooks/*.ipynb

distclean: clean ## also remove results/, the data cache and .venv
	rm -rf results data/cache $(VENV)
