# Two entry points (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench clean check-wheel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,examples]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/tour.py

test: $(STAMP)
	$(PY) -m ruff check src tests examples
	$(PY) -m mypy
	$(PY) -m pytest -p no:cacheprovider

# The peers install next to symgrad; llvmlite stays at the installed version (pip stops
# rather than replace the LLVM that symgrad compiles with).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]' "llvmlite==$$($(PY) -c 'import llvmlite; print(llvmlite.__version__)')"
	$(PY) benchmarks/run_all.py

# Build a wheel, install it (with the cuda extra, for NVRTC) into a fresh virtual
# environment and run tools/wheel_smoke.py from outside the source tree.
WHEEL_DIR ?= build/wheel-check
check-wheel: $(STAMP)
	rm -rf $(WHEEL_DIR)
	$(PY) -m pip wheel --quiet --no-deps -w $(WHEEL_DIR)/dist .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet "$$(ls $(WHEEL_DIR)/dist/symgrad-*.whl)[cuda]"
	cd $(WHEEL_DIR) && PATH="$(CURDIR)/$(WHEEL_DIR)/venv/bin:$$PATH" venv/bin/python $(CURDIR)/tools/wheel_smoke.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
