"""The ``symgrad`` command: ``ops``, ``passes``, ``inspect MODEL.py``, ``emit MODEL.py``."""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Sequence

from symgrad.ir.tensor import Tensor


def _load_model(path: str) -> dict[str, Tensor]:
    """Run a model file and collect its tensors: ``OUTPUTS`` if it defines it, else every
    top-level tensor."""
    ns = runpy.run_path(path, run_name="__symgrad_model__")
    if "OUTPUTS" in ns:
        outs = ns["OUTPUTS"]
        if isinstance(outs, dict):
            return dict(outs)
        outs = [outs] if isinstance(outs, Tensor) else list(outs)
        return {f"out{k}": t for k, t in enumerate(outs)}
    found = {k: v for k, v in ns.items() if isinstance(v, Tensor) and not k.startswith("_")}
    if not found:
        raise SystemExit(f"{path}: defines no tensors (set OUTPUTS = [...] in the file)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    import symgrad as sg
    from symgrad import inspect as sgi
    from symgrad.ops import table
    from symgrad.passes import known_passes

    ap = argparse.ArgumentParser(prog="symgrad", description="symgrad command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ops", help="print the op x rule table")
    sub.add_parser("passes", help="list the registered passes")
    ins = sub.add_parser("inspect", help="print derived formulas of a model file's outputs")
    ins.add_argument("model")
    ins.add_argument("--format", choices=["pretty", "sympy", "latex", "text", "dot"], default="pretty")
    ins.add_argument("--pipeline", default=None)
    ins.add_argument("--render", metavar="PATH", help="also draw the graph to PATH (.png or .svg)")
    em = sub.add_parser("emit", help="write a model file's outputs as a standalone bundle")
    em.add_argument("model")
    em.add_argument("--target", choices=["c", "llvm", "cuda", "numpy"], default="c")
    em.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to write")
    em.add_argument("--name", default=None, help="symbol prefix (default: the model file's name)")
    em.add_argument("--pipeline", default=None)
    em.add_argument("--size", action="append", default=[], metavar="SYM=N",
                    help="size of a symbolic dimension in the golden data (repeatable)")
    args = ap.parse_args(argv)

    if args.cmd == "ops":
        print(table())
    elif args.cmd == "passes":
        for name, cls in sorted(known_passes().items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{name:<14} {doc[0] if doc else ''}")
    elif args.cmd == "emit":
        import os

        from symgrad.emit import emit

        model = _load_model(args.model)
        sizes = {}
        for item in args.size:
            sym, _, value = item.partition("=")
            sizes[sym] = int(value)
        name = args.name or os.path.splitext(os.path.basename(args.model))[0]
        bundle = emit(model, target=args.target, out_dir=args.out, name=name,
                      pipeline=args.pipeline, sizes=sizes)
        print(f"wrote {len(bundle.files)} files for {bundle.name} ({args.target}) to {args.out}")
    elif args.cmd == "inspect":
        model = _load_model(args.model)
        names, outs = list(model), list(model.values())
        if args.format == "pretty":
            print(sg.pretty(outs, names=names, pipeline=args.pipeline))
        elif args.format == "sympy":
            print(sgi.to_sympy(outs, pipeline=args.pipeline))
        elif args.format == "latex":
            print(sgi.latex(outs, pipeline=args.pipeline))
        elif args.format == "text":
            from symgrad.ir.graph import to_text
            from symgrad.passes.manager import run_pipeline

            print(to_text(run_pipeline(outs, args.pipeline or sgi.readable_pipeline())[0]), end="")
        elif args.format == "dot":
            print(sgi.to_dot(outs, pipeline=args.pipeline))
        if args.render:
            sgi.render(outs, args.render, pipeline=args.pipeline)
            print(f"graph drawn to {args.render}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
