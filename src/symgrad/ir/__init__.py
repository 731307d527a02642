"""Symbolic values, dtypes, shapes with symbolic sizes, graph walks, text form, verifier."""

from symgrad.ir.dtypes import DTYPES, as_dtype, promote
from symgrad.ir.graph import placeholders, to_text, toposort, toposort_by_creation, verify
from symgrad.ir.shape import Dim, Shape, Size
from symgrad.ir.tensor import ConstData, Tensor, constant, placeholder

__all__ = [
    "DTYPES",
    "ConstData",
    "Dim",
    "Shape",
    "Size",
    "Tensor",
    "as_dtype",
    "constant",
    "placeholder",
    "placeholders",
    "promote",
    "to_text",
    "toposort",
    "toposort_by_creation",
    "verify",
]
