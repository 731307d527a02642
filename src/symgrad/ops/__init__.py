"""Op declarations. Importing this package registers every op.

``python -m symgrad.ops`` (or ``symgrad ops``) prints the op x rule table.
"""

from symgrad.ops import (  # noqa: F401  (registration)
    api,
    elementwise,
    nn_ops,  # noqa: F401  (registration)
    random_ops,  # noqa: F401  (registration)
    tensor_ops,
    transforms,
)
from symgrad.ops.base import OPS, Info, Op, register, table

__all__ = ["OPS", "Info", "Op", "register", "table"]
