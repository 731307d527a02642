"""W4: the cost of one call of a compiled f(a, b) = a*b + 1 returning the value and both
gradients, on float32 scalars, with the usual input checks on (symgrad's checks always run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, check, peer, timeit_batched  # noqa: E402

NAME = "W4 call overhead"


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg

    a, b = np.float32(1.5), np.float32(-2.0)
    want = [a * b + 1, b, a]
    rows: list[Row] = []

    def add(name: str, fn: Any) -> None:
        bad = check(name, fn(), want, 1e-6, 1e-6)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        med, lo = timeit_batched(fn, batch=200 if quick else 2000)
        rows.append(Row(NAME, name, med, lo))

    def by_hand(x: Any, y: Any) -> tuple[Any, Any, Any]:
        return x * y + 1, y, x

    add("plain Python by hand", lambda: by_hand(a, b))
    sa, sb = sg.placeholder("a", (), "float32"), sg.placeholder("b", (), "float32")
    y = sa * sb + 1.0
    outs = [y, *sg.grad(y, [sa, sb])]
    for backend in ("numpy", "llvm"):
        f = sg.compile(outs, [sa, sb], backend=backend)
        add(f"symgrad {backend}", lambda f=f: f(a, b))
    torch = peer("torch")
    if torch is None:
        rows.append(Row(NAME, "PyTorch eager", None, note="not installed"))
    else:
        def torch_call() -> list[Any]:
            ta = torch.tensor(a, requires_grad=True)
            tb = torch.tensor(b, requires_grad=True)
            out = ta * tb + 1
            ga, gb = torch.autograd.grad(out, [ta, tb])
            return [out.item(), ga.item(), gb.item()]

        add("PyTorch eager", torch_call)
    jax = peer("jax")
    if jax is None:
        rows.append(Row(NAME, "JAX jit", None, note="not installed"))
    else:
        vg = jax.jit(jax.value_and_grad(lambda x, z: x * z + 1, argnums=(0, 1)))
        add("JAX jit", lambda: (lambda r: [r[0], r[1][0], r[1][1]])(jax.block_until_ready(vg(a, b))))
    if peer("pytensor") is None:
        rows.append(Row(NAME, "PyTensor", None, note="not installed"))
    return rows


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:18s} {r.contender:22s} {fmt_time(r.median_s):>12s} {r.note}")
