"""NumPy-named functions over PyTorch tensors, for the ``T`` form of a program.

Only what :func:`tests.fuzz.program.node_source` prints for ``lib="T"`` is here. PyTorch
is imported when this module is, so import it only where ``torch`` is installed.
"""

from __future__ import annotations

from typing import Any

import torch

_DT = {"float32": torch.float32, "float64": torch.float64, "int32": torch.int32,
       "int64": torch.int64, "bool": torch.bool}


def _dims(x: Any, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, int):
        return (axis % x.ndim,)
    return tuple(a % x.ndim for a in axis)


def _reduce(fn: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    dims = _dims(x, axis)
    if not dims:
        return x
    # one axis at a time, from the last, so every torch reduction sees a single dim
    for d in sorted(dims, reverse=True):
        x = fn(x, d, keepdims)
    return x


class T:
    """The namespace a program's ``T`` lines run in."""

    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    sqrt = staticmethod(torch.sqrt)
    tanh = staticmethod(torch.tanh)
    sin = staticmethod(torch.sin)
    abs = staticmethod(torch.abs)
    square = staticmethod(torch.square)
    negative = staticmethod(torch.negative)
    sigmoid = staticmethod(torch.sigmoid)
    relu = staticmethod(torch.relu)
    add = staticmethod(torch.add)
    subtract = staticmethod(torch.subtract)
    multiply = staticmethod(torch.multiply)
    divide = staticmethod(torch.divide)
    maximum = staticmethod(torch.maximum)
    minimum = staticmethod(torch.minimum)
    matmul = staticmethod(torch.matmul)

    @staticmethod
    def softplus(x: Any) -> Any:
        return torch.nn.functional.softplus(x)

    @staticmethod
    def where(c: Any, a: Any, b: Any) -> Any:
        return torch.where(c, a, b)

    @staticmethod
    def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return _reduce(lambda t, d, k: torch.sum(t, d, keepdim=k), x, axis, keepdims)

    @staticmethod
    def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return _reduce(lambda t, d, k: torch.mean(t, d, keepdim=k), x, axis, keepdims)

    @staticmethod
    def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return _reduce(lambda t, d, k: torch.amax(t, d, keepdim=k), x, axis, keepdims)

    @staticmethod
    def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return _reduce(lambda t, d, k: torch.amin(t, d, keepdim=k), x, axis, keepdims)

    @staticmethod
    def prod(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return _reduce(lambda t, d, k: torch.prod(t, d, keepdim=k), x, axis, keepdims)

    @staticmethod
    def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        dims = _dims(x, axis)
        return torch.logsumexp(x, dims, keepdim=keepdims) if dims else x

    @staticmethod
    def softmax(x: Any, axis: int = -1) -> Any:
        return torch.softmax(x, axis)

    @staticmethod
    def log_softmax(x: Any, axis: int = -1) -> Any:
        return torch.log_softmax(x, axis)

    @staticmethod
    def getitem(x: Any, key: tuple[Any, ...]) -> Any:
        axis = 0
        for k in key:
            if k is None:
                x = x.unsqueeze(axis)
                axis += 1
            elif isinstance(k, int):
                x = x.select(axis, k)
            elif isinstance(k, list):
                n = x.shape[axis]
                x = x.index_select(axis, torch.tensor([j % n for j in k], dtype=torch.int64))
                axis += 1
            else:  # a slice, any step: pick the indices NumPy's slice gives
                idx = torch.tensor(list(range(*k.indices(x.shape[axis]))), dtype=torch.int64)
                x = x.index_select(axis, idx)
                axis += 1
        return x

    @staticmethod
    def reshape(x: Any, shape: Any) -> Any:
        return torch.reshape(x, tuple(shape))

    @staticmethod
    def transpose(x: Any, axes: Any) -> Any:
        return x.permute(*axes)

    @staticmethod
    def expand_dims(x: Any, axis: int) -> Any:
        return x.unsqueeze(axis % (x.ndim + 1))

    @staticmethod
    def squeeze(x: Any, axis: int) -> Any:
        return x.squeeze(axis)

    @staticmethod
    def broadcast_to(x: Any, shape: Any) -> Any:
        return torch.broadcast_to(x, tuple(shape))

    @staticmethod
    def zeros_like(x: Any, dtype: str) -> Any:
        return torch.zeros(tuple(x.shape), dtype=_DT[dtype])

    @staticmethod
    def ones_like(x: Any, dtype: str) -> Any:
        return torch.ones(tuple(x.shape), dtype=_DT[dtype])

    @staticmethod
    def full(shape: Any, value: float, dtype: str) -> Any:
        return torch.full(tuple(shape), value, dtype=_DT[dtype])

    @staticmethod
    def arange(n: int) -> Any:
        return torch.arange(n, dtype=torch.int64)

    @staticmethod
    def asarray(v: Any, dtype: str) -> Any:
        return torch.tensor(v, dtype=_DT[dtype])

    @staticmethod
    def array(v: Any, dtype: str) -> Any:
        return torch.tensor(v, dtype=_DT[dtype])

    @staticmethod
    def concatenate(xs: list[Any], axis: int = 0) -> Any:
        return torch.cat(xs, axis)

    @staticmethod
    def inner(a: Any, b: Any) -> Any:
        return torch.tensordot(a, b, dims=([a.ndim - 1], [b.ndim - 1]))

    @staticmethod
    def cast(x: Any, dtype: str) -> Any:
        return x.to(_DT[dtype])
