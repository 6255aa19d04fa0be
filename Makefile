# Two entry points (see README): `make demo` and `make test`. Both create .venv/ on first use;
# `make test` also creates .venv310/ (Python 3.10 + numpy 1.x, runtime only: Humble's pairing).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Python 3.10 for the runtime run: pyenv's, else python3.10 on PATH. PYTHON310=none skips that run
# (a notice, not an error; CI=true makes a missing Python 3.10 an error).
PYTHON310 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.10.*/bin/python) $(shell command -v python3.10 2>/dev/null))
VENV310 := .venv310
STAMP310 := $(VENV310)/.installed
# Keep DDS discovery on this machine and away from other runs: Iron+ read ROS_AUTOMATIC_DISCOVERY_RANGE,
# Humble ROS_LOCALHOST_ONLY (set only there: Iron+ warn about it at every node start; mde_ros.ros.discovery).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
ifneq ($(filter foxy galactic humble,$(ROS_DISTRO)),)
export ROS_LOCALHOST_ONLY ?= 1
endif
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-py310 bench clean

$(STAMP): requirements.txt requirements-ros.txt requirements-torch.txt requirements-test.txt requirements-dev.txt \
          constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(STAMP310): requirements.txt requirements-ros.txt requirements-test.txt constraints-py310.txt setup.py
	$(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install --quiet -r requirements.txt -r requirements-ros.txt \
		-r requirements-test.txt -c constraints-py310.txt
	$(VENV310)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP310)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mde-ros demo --out demo_output

# ruff (rules in ruff.toml), then both test runs; all always run, and the target fails if any failed.
test: $(STAMP)
	@status=0; $(VENV)/bin/ruff check . || status=$$?; \
	$(PY) -m pytest -q test || status=$$?; \
	$(MAKE) --no-print-directory test-py310 || status=1; exit $$status

# The runtime tests (everything needing neither torch nor training; those modules skip) on Python 3.10.
test-py310:
ifeq ($(PYTHON310),none)
	@echo "Python 3.10 runtime run skipped (PYTHON310=none)"
else ifeq ($(strip $(PYTHON310)),)
	@if [ -n "$$CI" ]; then echo "Python 3.10 not found: pyenv install 3.10.13 (or PYTHON310=/path)"; exit 1; fi
	@echo "Python 3.10 not found: its runtime run is skipped (pyenv install 3.10.13, or PYTHON310=/path)"
else
	@$(MAKE) --no-print-directory $(STAMP310)
	@echo "== runtime tests on $$($(VENV310)/bin/python -c 'import sys, numpy; print("Python", sys.version.split()[0], "numpy", numpy.__version__)') (.venv310) =="
	$(VENV310)/bin/python -m pytest -q test
endif

bench: $(STAMP)
	$(VENV)/bin/mde-ros bench

clean:
	rm -rf $(VENV) $(VENV310) build install log demo_output
