# ferrolib: the whole pipeline. `make figures` and `make test` are the two commands that matter;
# both create the environment and fetch the data first, so a fresh clone needs nothing else.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3.11
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

.PHONY: help env data figures test smoke lab sync site bench clean distclean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

env: $(STAMP) ## create .venv and install ferrolib (editable) with its notebook and test extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
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

sync: $(STAMP) ## pair every notebooks/*.py with an .ipynb (jupytext --sync; the newer of the two wins)
	$(BIN)/jupytext --sync $(NOTEBOOKS)

# JupyterLab with the project's settings (jupyter-config/, added to the config path; the user's own settings are
# untouched): paired .py files open as notebooks, no news prompt, served on 127.0.0.1. Extra options: LAB_ARGS.
LAB_ROOT ?= notebooks
LAB_ARGS ?=
lab: sync ## open JupyterLab on the notebooks (double-click a .py to open it as a notebook)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} $(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) $(LAB_ARGS)

# The site renders the executed notebooks of `make figures`, or those of `make smoke` with SITE_FROM=smoke.
ifeq ($(SITE_FROM),smoke)
SITE_INPUTS := $(SMOKED)
SITE_FIGURES := $(SMOKE)/figures
else
SITE_INPUTS := $(EXECUTED)
SITE_FIGURES := figures
endif
site: data $(SITE_INPUTS) ## render the executed notebooks, figures and claims table into build/site/ (open index.html)
	$(BIN)/python -m ferrolib.site $(dir $(firstword $(SITE_INPUTS))) $(SITE_FIGURES) $(BUILD)/site

bench: data ## print training throughput of fp, sgd, mp and sps (and their ratios to fp)
	$(BIN)/python benchmarks/train_throughput.py

clean: ## remove executed notebooks and smoke outputs (keeps results/, figures/ and the data cache)
	rm -rf $(BUILD) $(SMOKE) notebooks/*.ipynb

distclean: clean ## also remove results/, the data cache and .venv
	rm -rf results data/cache $(VENV)
