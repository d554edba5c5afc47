# The README's commands. `make run` starts the service with everything it needs; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench check-replies clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-bench.txt
	scripts/install-system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/lint_imports.py
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/lint_imports.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)

check-replies: $(STAMP)
	$(BIN)/python -m replies check $(or $(FILE),replies.yaml)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Production: install on this server (root, checkout in /srv/weixin; see docs/deploy.md).
.PHONY: install-server test-deploy
install-server:
	sudo deploy/install.sh

# The deployment tests alone: nginx + uWSGI + Redis + token_service, faults under load, units.
test-deploy: $(STAMP)
	$(BIN)/python -m pytest tests/deploy

# Reliability (tests/reliability/, fuzz/, soak/): coverage-guided fuzzing for FUZZ_SECONDS (default 60),
# and the soak through nginx + uWSGI for SOAK_SECONDS (default 180), which rewrites docs/reliability.md.
.PHONY: fuzz soak
fuzz: $(STAMP)
	$(BIN)/pip install --quiet -r requirements-fuzz.txt
	$(BIN)/python fuzz/fuzz_message.py -max_total_time=$(or $(FUZZ_SECONDS),60)

soak: $(STAMP)
	$(BIN)/python -m soak --duration $(or $(SOAK_SECONDS),180) --readme README.md

# Mutation testing of the core modules listed in pyproject.toml [tool.mutmut] (docs/testing.md): about
# half an hour on 2 cores, not part of `make test`. MUTANTS=<names> re-runs only those (after a full run);
# MUTATE_CHILDREN sets the parallel test processes (default 2). uwsgi.xml finds the venv beside the code.
.PHONY: mutate
mutate: $(STAMP)
	$(BIN)/pip install --quiet -r requirements-mutate.txt
	$(if $(MUTANTS),,rm -rf mutants)
	mkdir -p mutants && ln -sfn "$(CURDIR)/$(VENV)" mutants/.venv
	$(BIN)/mutmut run --max-children $(or $(MUTATE_CHILDREN),2) $(MUTANTS)
	$(BIN)/mutmut results
