# Two commands do all set-up on a fresh machine:
#   make run    -- the main job (creates .venv and installs what it needs when missing)
#   make test   -- the test suite (likewise)
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-slow test-physics bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,playground]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rlax-inf main --resume

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile -m "not physics and not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile -m "slow and not physics" $(PYTEST_ARGS)

test-physics: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile -m physics $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.ops

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
