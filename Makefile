# Module 6.3 "Architecture & Conditioning": one entry point for students, instructors and CI.
# `make` (or `make help`) lists the targets. Everything runs offline on a CPU.

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
# Students' kernels (make lab) are offline by default: hub look-ups fail at once instead of
# hanging for 20-50 s. Instructor commands take their whole environment from the course
# registry (graders/course.py): `python -m graders.course env` prints it.
export HF_HUB_OFFLINE ?= 1
INSTRUCTOR := eval "$$($(BIN)/python -m graders.course env)" &&
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)
A ?=
S ?=

.DEFAULT_GOAL := help
.PHONY: help setup setup-grading lab test test-fast test-browser assignments collect autograde \
        roster feedback grades formgrader tiny-models eval-tiny bench clean distclean

help: ## list the targets
	@echo "Module 6.3 'Architecture & Conditioning' (see README.md)"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  Options: A=<assignment> S=<student> J=<jobs> FORCE=1 FROM=<folder or file>"
	@echo "           (e.g. make autograde A=6-3-2-conditioning-the-unet J=2)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, this is " + sys.version.split()[0]'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e .
	@# notebooks run on "Python 3 (ipykernel)", the interpreter Jupyter runs on (this venv); an
	@# older setup's unused "Python (sdcourse)" kernel is removed
	-@$(BIN)/jupyter kernelspec remove -y sdcourse >/dev/null 2>&1
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1 || true
	$(BIN)/jupyter server extension enable --sys-prefix nbgrader >/dev/null 2>&1 || true
	touch $(STAMP)

setup: $(STAMP) ## create .venv with the pinned packages and nbgrader's extensions
	@echo "ready: $(VENV) (notebooks run on its 'Python 3 (ipykernel)' kernel); next: make lab"

# Debian packages: the grading sandbox (bubblewrap), and what the tests start themselves
# (a PostgreSQL server, Chromium). Installed with apt-get when run as root; otherwise listed.
SYSTEM_PKGS := $(strip $(if $(shell command -v bwrap),,bubblewrap) \
                 $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
                 $(if $(shell command -v chromium),,chromium))

setup-grading: ## install bubblewrap (the grading sandbox), PostgreSQL and Chromium (tests) with apt-get, as root
ifeq ($(SYSTEM_PKGS),)
	@echo "grading tools present: bubblewrap, PostgreSQL, Chromium"
else
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null 2>&1 || \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS))); \
	else echo "please install (Debian/Ubuntu: sudo apt-get install $(SYSTEM_PKGS)); tests that need them are skipped"; fi
endif

lab: $(STAMP) ## open the course in JupyterLab (offline) on notebooks/: the student's Lab, with Validate
	$(BIN)/python graders/jupyter/serve.py student

formgrader: $(STAMP) ## instructor: JupyterLab on the course root with nbgrader's Formgrader (grades as make autograde)
	$(BIN)/python graders/jupyter/serve.py instructor

test: $(STAMP) setup-grading ## run every test: units, mutants, release sync, nbgrader round trip, nbval on solutions/
	$(INSTRUCTOR) $(BIN)/python -m pytest tests -n 2 --dist loadscope -p no:cacheprovider --durations=10
	$(INSTRUCTOR) $(BIN)/python -m pytest solutions --nbval-lax --nbval-current-env -p no:cacheprovider -n 2 --dist loadfile

test-browser: $(STAMP) setup-grading ## the course in headless Chromium: both Labs, every lesson, the Formgrader (<= 10 min)
	$(INSTRUCTOR) $(BIN)/python -m pytest tests/browser -p no:cacheprovider

test-fast: $(STAMP) ## the quick tests only (no notebook execution, no nbgrader)
	$(INSTRUCTOR) $(BIN)/python -m pytest tests -m "not slow" -n 2 -p no:cacheprovider

assignments: $(STAMP) ## regenerate notebooks/ (student release) from solutions/ with nbgrader
	$(BIN)/python -m graders.grade release $(if $(A),-a $(A))

collect: $(STAMP) ## copy submissions from FROM=<folder>/<student>/... into graders/workspace/submitted
	@test -n "$(FROM)" || (echo "usage: make collect FROM=<folder with one sub-folder per student>"; exit 2)
	$(BIN)/python -m graders.grade collect "$(FROM)"

roster: $(STAMP) ## add the students of FROM=<roster.csv> (student,first_name,last_name,email) to the gradebook
	@test -n "$(FROM)" || (echo "usage: make roster FROM=roster.csv"; exit 2)
	$(BIN)/python -m graders.grade roster "$(FROM)"

autograde: assignments ## grade new or changed submissions, J at a time, each in a sandbox (A=, S=, J=, FORCE=1)
	$(BIN)/python -m graders.grade autograde $(if $(A),-a $(A)) $(if $(S),-s $(S)) $(if $(J),-j $(J)) $(if $(FORCE),--force)

feedback: $(STAMP) ## write HTML feedback for every autograded submission
	$(BIN)/python -m graders.grade feedback $(if $(A),-a $(A)) $(if $(S),-s $(S))

grades: $(STAMP) ## export graders/workspace/grades.csv: totals and a per-exercise breakdown
	$(BIN)/python -m graders.grade grades

tiny-models: $(STAMP) ## retrain the offline tiny models from scratch and re-measure them (2-core CPU: about 48 min)
	$(BIN)/python -m sdcourse.tiny.build_all

eval-tiny: $(STAMP) ## re-measure the tiny models' quality figures
	$(BIN)/python -m sdcourse.tiny.evaluate

bench: $(STAMP) ## time each reference notebook and one autograde per lesson (writes bench/results.md)
	$(BIN)/python -m graders.bench

clean: ## remove caches and build leftovers (never the grading workspace)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache *.egg-info build dist

distclean: clean ## also remove .venv
	rm -rf $(VENV)
