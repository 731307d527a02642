"""``python -m tests.fuzz --seconds 600 --seed 1``: a longer fuzzing session by hand.

Runs seeds ``seed, seed + 1, ...`` until the time is up (or ``--count`` programs ran),
prints each failure as it is found, shrinks the first of each kind to a minimal program
and writes its reproducer script into ``--out`` (default ``fuzz-failures/``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from .runner import BACKENDS, session


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--count", type=int, default=None, help="stop after this many programs")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help=f"comma-separated backends (default {','.join(BACKENDS)})")
    ap.add_argument("--shrink-seconds", type=float, default=60.0,
                    help="time to shrink each new kind of failure (0: do not shrink)")
    ap.add_argument("--out", type=Path, default=Path("fuzz-failures"),
                    help="folder for reproducer scripts (default fuzz-failures/)")
    args = ap.parse_args(argv)
    seeds = (itertools.count(args.seed) if args.count is None
             else range(args.seed, args.seed + args.count))
    report = session(seeds, args.seconds, tuple(args.backends.split(",")), args.shrink_seconds,
                     log=lambda s: print(s, flush=True))
    if report.failures:
        args.out.mkdir(parents=True, exist_ok=True)
        written: set[tuple[str, str, str]] = set()
        for f in report.failures:
            if f.failure.signature in written:
                continue
            written.add(f.failure.signature)
            path = args.out / f"seed{f.seed}_{f.failure.check}_{f.failure.backend}.py"
            path.write_text(f.script)
            print(f"\n==== reproducer {path} ====\n{f.script}")
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
