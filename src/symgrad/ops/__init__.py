"""Op declarations. Importing this package registers every op.

``python -m symgrad.ops`` (or ``symgrad ops``) prints the op x rule table.
"""

from symgrad.ops import api, elementwise, tensor_ops, transforms  # noqa: F401  (registration)
from symgrad.ops import nn_ops  # noqa: F401  (registration)
from symgrad.ops import random_ops  # noqa: F401  (registration)
from symgrad.ops.base import OPS, Info, Op, register, table

__all__ = ["OPS", "Info", "Op", "register", "table"]
