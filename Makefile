# Two entry points (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench clean check-wheel check-targets check-sanitizers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,examples]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/tour.py

lint: $(STAMP)
	$(PY) -m ruff check src tests examples tools benchmarks

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck
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

# The llvm tests again with code generated for a baseline x86-64 (no AVX), so CI covers
# a target other than its own CPU (the IR tests pin their targets themselves).
check-targets: $(STAMP)
	SYMGRAD_LLVM_CPU=x86-64-v2 $(PY) -m pytest -p no:cacheprovider tests/test_llvm_backend.py \
		tests/test_vecmath.py -k "not two_processes and not blas_provider_is_chosen"

# The standalone bundles' own tests, built with AddressSanitizer and UBSan.
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
check-sanitizers: $(STAMP)
	SYMGRAD_BUNDLE_CFLAGS="$(SANITIZE)" $(PY) -m pytest -p no:cacheprovider tests/test_emit.py \
		tests/test_bundle_selftest.py tests/test_bundle_abi_doc.py tests/test_bundle_errors.py \
		tests/test_bundle_conformance.py tests/test_cuda_generated_ops.py tests/test_tour.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
