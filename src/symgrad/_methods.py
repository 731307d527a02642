"""Python operators and NumPy-style methods on :class:`Tensor`."""

from __future__ import annotations

from typing import Any

import symgrad.ops.api as F
from symgrad.ir.tensor import Tensor


def _swap(fn: Any) -> Any:
    return lambda self, other: fn(other, self)


_T: Any = Tensor
_T.__add__ = F.add
_T.__radd__ = _swap(F.add)
_T.__sub__ = F.sub
_T.__rsub__ = _swap(F.sub)
_T.__mul__ = F.mul
_T.__rmul__ = _swap(F.mul)
_T.__truediv__ = F.div
_T.__rtruediv__ = _swap(F.div)
_T.__pow__ = F.pow
_T.__rpow__ = _swap(F.pow)
_T.__matmul__ = F.matmul
_T.__rmatmul__ = _swap(F.matmul)
_T.__neg__ = F.neg
_T.__pos__ = lambda self: self
_T.__abs__ = F.abs
_T.__lt__ = F.less
_T.__le__ = F.less_equal
_T.__gt__ = F.greater
_T.__ge__ = F.greater_equal
_T.__and__ = F.logical_and
_T.__or__ = F.logical_or
_T.__invert__ = F.logical_not
_T.__getitem__ = F.getitem
_T.T = property(lambda self: F.transpose(self))
_T.mT = property(lambda self: F.swapaxes(self, -1, -2))
_T.reshape = lambda self, *shape: F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
_T.transpose = lambda self, *axes: F.transpose(self, (axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes) or None)
_T.sum = lambda self, axis=None, keepdims=False: F.sum(self, axis, keepdims)
_T.mean = lambda self, axis=None, keepdims=False: F.mean(self, axis, keepdims)
_T.max = lambda self, axis=None, keepdims=False: F.max(self, axis, keepdims)
_T.min = lambda self, axis=None, keepdims=False: F.min(self, axis, keepdims)
_T.prod = lambda self, axis=None, keepdims=False: F.prod(self, axis, keepdims)
_T.var = lambda self, axis=None, keepdims=False: F.var(self, axis, keepdims)
_T.std = lambda self, axis=None, keepdims=False: F.std(self, axis, keepdims)
_T.argmax = lambda self, axis=None, keepdims=False: F.argmax(self, axis, keepdims)
_T.argmin = lambda self, axis=None, keepdims=False: F.argmin(self, axis, keepdims)
_T.astype = F.cast
_T.flatten = lambda self: F.reshape(self, (-1,))
_T.ravel = lambda self: F.reshape(self, (-1,))
_T.squeeze = lambda self, axis=None: F.squeeze(self, axis)
_T.swapaxes = F.swapaxes
_T.dot = F.dot
_T.clip = lambda self, lo=None, hi=None: F.clip(self, lo, hi)
