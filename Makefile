# GenAI Lab — `make book` renders the book, `make test` checks everything (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0
PIP_QUIET := -q --disable-pip-version-check
export GENAILAB_DATA ?= $(abspath ../shared/data)
export GENAILAB_STATIC ?= 1

NB ?= chapters/02_vae.ipynb
PROFILE ?= auto
ARGS ?=

.PHONY: install book test unit notebooks book-check run bench report lab clean

install: $(STAMP)

# Create .venv if missing; torch is pinned first (the CPU wheel here; see README for CUDA builds).
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing $(TORCH_SPEC) and genailab-core[book,test,reference] and torchcfm into $(VENV)"
	@$(PY) -m pip install $(PIP_QUIET) "$(TORCH_SPEC)" 2>&1 | grep -v "is ignored: it is neither" || true
	@echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	@$(PY) -m pip install $(PIP_QUIET) -c $(VENV)/torch-constraint.txt -e ".[book,test,reference]" 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -m pip install $(PIP_QUIET) --no-deps "torchcfm==1.0.7" 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import torch, scanpy, genailab_core, nbval, jupyter_book, torchdiffeq" || { echo "install failed"; exit 1; }
	@touch $(STAMP)

# Execute every chapter (quick profile; jupyter-cache skips unchanged chapters) and render _build/html.
book: install
	GENAILAB_PROFILE=$${GENAILAB_PROFILE:-quick} $(JB) build . --keep-going
	@echo ">> open _build/html/index.html"

# Unit tests, every chapter under nbval (smoke profile), the book built with warnings as errors.
test: unit notebooks book-check

unit: install
	$(PY) -m pytest tests -q

notebooks: install
	GENAILAB_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider chapters -q

book-check: install
	@mkdir -p _build
	@sed 's/^\(\s*execute_notebooks:\).*/\1 "off"/' _config.yml > _build/_config_check.yml
	$(JB) build . --config _build/_config_check.yml --path-output _build/check -W -n --keep-going --all

run: install
	$(PY) -m genailab_core run $(NB) --profile $(PROFILE) $(ARGS)

# Jupyter Lab on the chapters; JupyterLab is installed into .venv on first use.
lab: install
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install $(PIP_QUIET) -e ".[lab]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/jupyter lab chapters

report: install
	$(PY) -m genailab_core report runs

bench: install
	@$(PY) -c "import scvi" 2>/dev/null || $(PY) -m pip install $(PIP_QUIET) -e ".[bench]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -m genailab_core bench vae

clean:
	rm -rf _build
