"""Symbolic tensors: the nodes of a symgrad graph.

Nodes are immutable and hash-consed: building the same op on the same inputs with the
same attributes returns the node that already exists, so structurally identical
subgraphs are one node and common-subexpression elimination comes for free. Because of
that, ``a == b`` on tensors is identity (structural equality); elementwise equality is
``sg.equal``.
"""

from __future__ import annotations

import hashlib
import itertools
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from symgrad.errors import user_location
from symgrad.ir.dtypes import as_dtype
from symgrad.ir.shape import Dim, Shape, Size, shape_str

if TYPE_CHECKING:
    from symgrad.ops.base import Op

Attrs = tuple[tuple[str, Any], ...]

_serial = itertools.count()
_location: list[str] = []  # set while a pass builds nodes on behalf of an existing node


class located:
    """Nodes built inside ``with located(node.loc):`` record that source line.

    Passes use it so that derived and rewritten nodes point at the user's line that
    built the node they came from (and building them skips the frame walk).
    """

    def __init__(self, loc: str) -> None:
        self.loc = loc

    def __enter__(self) -> None:
        _location.append(self.loc)

    def __exit__(self, *exc: object) -> None:
        _location.pop()
_table: weakref.WeakValueDictionary[tuple[Any, ...], Tensor] = weakref.WeakValueDictionary()


class ConstData:
    """An immutable array held by a ``constant`` node, hashed by its bytes."""

    __slots__ = ("array", "digest")

    def __init__(self, array: np.ndarray) -> None:
        arr = np.array(array, copy=True, order="C")
        arr.setflags(write=False)
        self.array = arr
        h = hashlib.sha1(arr.dtype.str.encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
        self.digest = h.hexdigest()

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConstData) and other.digest == self.digest

    def __repr__(self) -> str:
        a = self.array
        if a.size <= 8:
            return np.array2string(a, separator=", ", floatmode="unique").replace("\n", "")
        return f"<{a.dtype.name}{list(a.shape)} #{self.digest[:8]}>"


class Tensor:
    """A symbolic tensor: the result of one op applied to input tensors."""

    __slots__ = (
        "op",
        "inputs",
        "attrs",
        "shape",
        "dtype",
        "serial",
        "loc",
        "checks",
        "_attr_dict",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy defers to our operators
    op: Op
    inputs: tuple[Tensor, ...]
    attrs: Attrs
    shape: Shape
    dtype: str
    serial: int
    loc: str
    checks: tuple[tuple[str, Size, Size, str], ...]
    _attr_dict: dict[str, Any] | None

    def __init__(self) -> None:  # pragma: no cover - use Tensor.make
        raise TypeError("tensors are built by ops; use sg.placeholder, sg.constant or an op")

    @staticmethod
    def make(op: Op, inputs: tuple[Tensor, ...], attrs: Attrs = (), like: Tensor | None = None) -> Tensor:
        """Return the node ``op(inputs; attrs)``, creating it only if it does not exist.

        ``like``: a node of the same op and attributes whose inputs had the same shapes and
        dtypes as ``inputs``; its type is reused instead of re-running the shape rule.
        """
        key = (op.name, attrs, tuple(map(id, inputs)))
        node = _table.get(key)
        if node is not None:
            return node
        info: Any = like if like is not None else op.infer(inputs, dict(attrs))
        node = object.__new__(Tensor)
        node.op = op
        node.inputs = inputs
        node.attrs = attrs
        node.shape = info.shape
        node.dtype = info.dtype
        node.checks = info.checks
        node.serial = next(_serial)
        node.loc = _location[-1] if _location else user_location()
        node._attr_dict = None
        _table[key] = node
        return node

    # -- introspection ----------------------------------------------------------------
    def attr(self, key: str, default: Any = None) -> Any:
        d = self._attr_dict
        if d is None:
            d = self._attr_dict = dict(self.attrs)
        return d.get(key, default)

    @property
    def label(self) -> str:
        """The user's name for a placeholder, else the op's name (for messages)."""
        return self.name or self.op.name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str | None:
        """The user's name for a placeholder (or a labelled parameter), else ``None``."""
        name = self.attr("name")
        return name if isinstance(name, str) else None

    @property
    def size(self) -> Size:
        from symgrad.ir.shape import prod

        return prod(self.shape)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Tensor {self.op.name}{label} {self.dtype}{shape_str(self.shape)}>"

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a symbolic tensor is unknown until it runs; "
            "use sg.where for data-dependent choices"
        )

    def __iter__(self) -> Iterator[Tensor]:
        if not self.shape or not isinstance(self.shape[0], int):
            raise TypeError("iteration needs a leading dimension of static size")
        return (self[i] for i in range(self.shape[0]))

    def __len__(self) -> int:
        if not self.shape or not isinstance(self.shape[0], int):
            raise TypeError("len() needs a leading dimension of static size")
        return self.shape[0]

    # -- operators and NumPy-style methods (the functions live in symgrad.ops.api) ----------
    def __add__(self, other: Any) -> Tensor:
        return _F().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _F().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _F().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _F().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _F().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _F().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _F().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _F().div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _F().pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _F().pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _F().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _F().matmul(other, self)

    def __neg__(self) -> Tensor:
        return _F().neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _F().abs(self)

    def __lt__(self, other: Any) -> Tensor:
        return _F().less(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _F().less_equal(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _F().greater(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _F().greater_equal(self, other)

    def __and__(self, other: Any) -> Tensor:
        return _F().logical_and(self, other)

    def __or__(self, other: Any) -> Tensor:
        return _F().logical_or(self, other)

    def __invert__(self) -> Tensor:
        return _F().logical_not(self)

    def __getitem__(self, key: Any) -> Tensor:
        return _F().getitem(self, key)

    @property
    def T(self) -> Tensor:  # noqa: N802 - NumPy's name
        return _F().transpose(self)

    @property
    def mT(self) -> Tensor:  # noqa: N802 - NumPy's name
        return _F().swapaxes(self, -1, -2)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _F().reshape(self, shape)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _F().transpose(self, axes or None)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().max(self, axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().min(self, axis, keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().prod(self, axis, keepdims)

    def var(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().var(self, axis, keepdims)

    def std(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _F().std(self, axis, keepdims)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        return _F().argmax(self, axis, keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        return _F().argmin(self, axis, keepdims)

    def astype(self, dtype: Any) -> Tensor:
        return _F().cast(self, dtype)

    def flatten(self) -> Tensor:
        return _F().reshape(self, (-1,))

    def ravel(self) -> Tensor:
        return _F().reshape(self, (-1,))

    def squeeze(self, axis: Any = None) -> Tensor:
        return _F().squeeze(self, axis)

    def swapaxes(self, a: int, b: int) -> Tensor:
        return _F().swapaxes(self, a, b)

    def dot(self, other: Any) -> Tensor:
        return _F().dot(self, other)

    def clip(self, lo: Any = None, hi: Any = None) -> Tensor:
        return _F().clip(self, lo, hi)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:  # identity is structural equality here
        if not isinstance(other, Tensor):
            raise TypeError(_EQ_MESSAGE)
        return self is other

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            raise TypeError(_EQ_MESSAGE)
        return self is not other


_EQ_MESSAGE = (
    "== and != between a tensor and a value would not compare elements (on tensors they "
    "test whether two graphs are the same node); use sg.equal(x, v) or sg.not_equal(x, v)"
)
_api: Any = None


def _F() -> Any:
    global _api
    if _api is None:
        from symgrad.ops import api

        _api = api
    return _api


def placeholder(
    name: str, shape: tuple[int | str | Dim | None, ...] = (), dtype: Any = "float32"
) -> Tensor:
    """A named input, given when the compiled function is called.

    ``None`` in ``shape`` is a size known only at call time (one per placeholder axis);
    a string names a size that every placeholder using the same string must share.
    """
    from symgrad.ops.base import OPS

    if not isinstance(name, str) or not name:
        raise TypeError(f"placeholder name must be a non-empty string, got {name!r}")
    dims: list[Size] = []
    for i, s in enumerate(tuple(shape)):
        if s is None:
            dims.append(Dim.symbol(f"{name}.{i}"))
        elif isinstance(s, str):
            dims.append(Dim.symbol(s))
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0:
            dims.append(int(s))
        elif isinstance(s, Dim):
            dims.append(s)
        else:
            raise ValueError(f"placeholder {name!r}: bad size {s!r} in shape {shape!r}")
    attrs = (("dtype", as_dtype(dtype)), ("name", name), ("shape", tuple(dims)))
    node = Tensor.make(OPS["placeholder"], (), attrs)
    for d in dims:
        if isinstance(d, Dim):
            for sym in d.symbols:
                # the node goes last even when hash-consing returned an existing one: the
                # placeholder asked for most recently is the newest owner of its sizes
                owners = _size_owners.setdefault(sym, [])
                owners[:] = [r for r in owners if r() is not None and r() is not node]
                owners.append(weakref.ref(node))
    return node


# the live placeholders that carry each symbolic size, so that a graph which uses a
# placeholder only for its sizes (``zeros_like(x)``, ``arange(x.shape[0])``) can take it
# as an input
_size_owners: dict[str, list[weakref.ref[Tensor]]] = {}


def size_owners(symbol: str) -> list[Tensor]:
    """The live placeholders with the symbolic size ``symbol`` in their shape, in the order
    they were last asked for by :func:`placeholder` (the most recent last)."""
    found = [r() for r in _size_owners.get(symbol, ())]
    return [t for t in found if t is not None]


def constant(value: Any, dtype: Any = None) -> Tensor:
    """A constant tensor holding a copy of ``value``."""
    from symgrad.ops.base import OPS

    arr = np.asarray(value)
    if dtype is not None:
        arr = arr.astype(as_dtype(dtype))
    elif arr.dtype.name not in ("float32", "float64", "int32", "int64", "bool"):
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"constant of dtype {arr.dtype} is not supported")
    return Tensor.make(OPS["constant"], (), (("value", ConstData(arr)),))


def live_nodes() -> int:
    """How many nodes exist right now (for tests of hash-consing)."""
    return len(_table)
