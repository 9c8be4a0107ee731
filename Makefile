# The two commands of the README: `make demo` (main job on built-in toy data) and `make test`.
# Both set the environment up first (tools/setup_env.sh is idempotent: seconds when it is ready).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

# JOBS test processes (pytest-xdist; a test file stays in one, so its module fixtures run once), the cores shared
# among them (tests/conftest.py); JOBS=0 runs the suite in this one process.
JOBS ?= 2
test: setup
	$(PY) -m pytest -n $(JOBS) --dist loadfile --durations=25 --junitxml=work_dirs/test-report.xml

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(PY) -m ruff check .
