"""symgrad: a symbolic-graph compiler with graph-to-graph automatic differentiation.

>>> import symgrad as sg
>>> x = sg.placeholder("x", shape=(None, 3))
>>> w = sg.placeholder("w", shape=(3,))
>>> loss = sg.mean((sg.tanh(x @ w) - 2.0) ** 2)
>>> f = sg.compile([loss, sg.grad(loss, w)])
"""

from __future__ import annotations

from symgrad import ops as _ops  # registers every op
from symgrad import passes  # noqa: F401
from symgrad.compile import Function, compile
from symgrad.derivatives import grad, hessian, hvp, jacobian, jvp, vjp
from symgrad.errors import (
    DTypeError,
    GradientError,
    InputDTypeError,
    InputError,
    PassError,
    ShapeError,
    SymgradError,
    UnsupportedError,
)
from symgrad.ir import Dim, Tensor, constant, placeholder
from symgrad.ops.api import (
    abs,
    absolute,
    add,
    amax,
    amin,
    arange,
    argmax,
    argmin,
    as_tensor,
    astype,
    broadcast_to,
    cast,
    ceil,
    clip,
    concatenate,
    cos,
    dim_value,
    div,
    divide,
    dot,
    equal,
    erf,
    exp,
    expand_dims,
    expm1,
    eye,
    flatten,
    floor,
    full,
    greater,
    greater_equal,
    inner,
    less,
    less_equal,
    log,
    log1p,
    log_softmax,
    logical_and,
    logical_not,
    logical_or,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    moveaxis,
    mul,
    multiply,
    neg,
    negative,
    not_equal,
    one_hot,
    ones,
    ones_like,
    outer,
    permute_dims,
    pow,
    power,
    prod,
    ravel,
    reciprocal,
    relu,
    reshape,
    round,
    sigmoid,
    sign,
    sin,
    softmax,
    softplus,
    sqrt,
    square,
    squeeze,
    stack,
    std,
    sub,
    subtract,
    sum,
    swapaxes,
    take,
    tanh,
    transpose,
    true_divide,
    var,
    where,
    zeros,
    zeros_like,
)
from symgrad import nn  # noqa: E402
from symgrad import optim, train  # noqa: E402,F401
from symgrad.inspect import explain_grad, latex, pretty, render, to_dot, to_sympy  # noqa: E402
from symgrad.emit import emit  # noqa: E402

float32 = "float32"
float64 = "float64"
int32 = "int32"
int64 = "int64"
bool_ = "bool"

__version__ = "0.1.0"

__all__ = [name for name in dir() if not name.startswith("_")]
