"""A differential fuzzer: random programs over symgrad's public API, run on every backend
and checked against NumPy, finite differences and (where installed) PyTorch.

``python -m tests.fuzz --seconds 600 --seed 1`` runs it by hand; ``tests/fuzz/test_fuzz.py``
runs a fixed list of seeds in CI. See docs/fuzzing.md.
"""
