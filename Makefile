# Module 6.3 "Architecture & Conditioning": one entry point for students, instructors and CI.
# `make` (or `make help`) lists the targets. Everything runs offline on a CPU.

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
# Offline by default: hub look-ups fail at once instead of hanging for 20-50 s.
export HF_HUB_OFFLINE ?= 1
export TQDM_DISABLE ?= 1
# Instructor commands run the hidden checks: `graders` must be importable in their kernels.
INSTRUCTOR := PYTHONPATH=$(CURDIR) PATH=$(CURDIR)/$(BIN):$$PATH
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)
A ?=
S ?=

.DEFAULT_GOAL := help
.PHONY: help setup lab test test-fast assignments collect autograde feedback grades \
        tiny-models eval-tiny bench clean distclean

help: ## list the targets
	@echo "Module 6.3 'Architecture & Conditioning' (see README.md)"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  Options: A=<assignment> S=<student> FROM=<folder>  (e.g. make autograde A=6-3-2-conditioning-the-unet)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, this is " + sys.version.split()[0]'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name sdcourse --display-name "Python (sdcourse)" >/dev/null
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1 || true
	$(BIN)/jupyter server extension enable --sys-prefix nbgrader >/dev/null 2>&1 || true
	touch $(STAMP)

setup: $(STAMP) ## create .venv with the pinned packages, a Jupyter kernel and nbgrader's extensions
	@echo "ready: $(VENV) (kernel 'Python (sdcourse)'); next: make lab"

lab: $(STAMP) ## open the course in JupyterLab (offline) on notebooks/
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(ROOT_FLAG)

test: $(STAMP) ## run every test: units, mutants, release sync, nbgrader round trip, nbval on solutions/
	$(INSTRUCTOR) $(BIN)/python -m pytest tests -n 2 --dist loadscope -p no:cacheprovider --durations=10
	$(INSTRUCTOR) $(BIN)/python -m pytest solutions --nbval-lax --nbval-current-env -p no:cacheprovider

test-fast: $(STAMP) ## the quick tests only (no notebook execution, no nbgrader)
	$(INSTRUCTOR) $(BIN)/python -m pytest tests -m "not slow" -p no:cacheprovider

assignments: $(STAMP) ## regenerate notebooks/ (student release) from solutions/ with nbgrader
	$(INSTRUCTOR) $(BIN)/python graders/grade.py release $(if $(A),-a $(A))

collect: $(STAMP) ## copy submissions from FROM=<folder>/<student>/... into graders/workspace/submitted
	@test -n "$(FROM)" || (echo "usage: make collect FROM=<folder with one sub-folder per student>"; exit 2)
	$(INSTRUCTOR) $(BIN)/python graders/grade.py collect "$(FROM)"

autograde: assignments ## autograde every collected submission (A=, S= to narrow)
	$(INSTRUCTOR) $(BIN)/python graders/grade.py autograde $(if $(A),-a $(A)) $(if $(S),-s $(S))

feedback: $(STAMP) ## write HTML feedback for every autograded submission
	$(INSTRUCTOR) $(BIN)/python graders/grade.py feedback $(if $(A),-a $(A)) $(if $(S),-s $(S))

grades: $(STAMP) ## export graders/workspace/grades.csv: totals and a per-exercise breakdown
	$(INSTRUCTOR) $(BIN)/python graders/grade.py grades

tiny-models: $(STAMP) ## retrain the offline tiny models from scratch and re-measure them (2-core CPU: 16-35 min)
	$(BIN)/python -m sdcourse.tiny.build_all

eval-tiny: $(STAMP) ## re-measure the tiny models' quality figures
	$(BIN)/python -m sdcourse.tiny.evaluate

bench: $(STAMP) ## time each reference notebook and one autograde per lesson (writes bench/results.md)
	$(INSTRUCTOR) $(BIN)/python graders/bench.py

clean: ## remove caches and build leftovers (never the grading workspace)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache *.egg-info build dist

distclean: clean ## also remove .venv
	rm -rf $(VENV)
