"""The pass registry, pipeline text and the pass manager's instrumentation.

A pass is a small frozen dataclass with a ``name`` and ``run(outputs) -> outputs``; its
fields are its options, written in pipeline text as ``name{key=value,...}``. The manager,
not the passes, times each pass, verifies after each, prints what changed and writes a
reproducer when a pass fails.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from symgrad.errors import PassError, SymgradError
from symgrad.ir.graph import order_cache, to_text, toposort_by_creation, verify
from symgrad.ir.tensor import Tensor


def count_nodes(outputs: Sequence[Tensor]) -> int:
    return len(toposort_by_creation(outputs))


class Pass(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]: ...


PASSES: dict[str, Callable[..., Pass]] = {}
_entry_points_loaded = False


def register_pass(cls: Callable[..., Pass], name: str | None = None) -> Callable[..., Pass]:
    key = name or cls().name
    if key in PASSES and PASSES[key] is not cls:
        raise ValueError(f"pass {key!r} is registered twice")
    PASSES[key] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group="symgrad.passes"):
        cls = ep.load()
        if ep.name in PASSES and PASSES[ep.name] is not cls:
            raise ValueError(f"pass {ep.name!r} from entry point {ep.value} clashes with "
                             "a registered pass of the same name")
        PASSES[ep.name] = cls


def known_passes() -> dict[str, Callable[..., Pass]]:
    _load_entry_points()
    return dict(PASSES)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _parse_value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_pipeline(text: str) -> list[Pass]:
    """``"canonicalize,autodiff,simplify{max_size=200}"`` -> pass objects."""
    passes = known_passes()
    out = []
    for item in _split_top(text):
        name, _, opts = item.partition("{")
        name = name.strip()
        if name not in passes:
            raise ValueError(f"unknown pass {name!r}; known passes: {', '.join(sorted(passes))}")
        kwargs = {}
        if opts:
            if not opts.endswith("}"):
                raise ValueError(f"pass options must end with '}}': {item!r}")
            for kv in _split_top(opts[:-1]):
                k, eq, v = kv.partition("=")
                if not eq:
                    raise ValueError(f"pass option {kv!r} needs key=value")
                kwargs[k.strip()] = _parse_value(v.strip())
        try:
            out.append(passes[name](**kwargs))
        except TypeError as exc:
            raise ValueError(f"pass {name!r}: {exc}") from None
    return out


def pipeline_text(passes: Sequence[Pass]) -> str:
    """Print passes back as pipeline text (options that differ from defaults only)."""
    items = []
    for p in passes:
        opts: list[str] = []
        if dataclasses.is_dataclass(p):
            for f in dataclasses.fields(p):
                if f.name == "name":
                    continue
                value = getattr(p, f.name)
                if f.default is not dataclasses.MISSING and value == f.default:
                    continue
                opts.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
        items.append(p.name + ("{" + ",".join(opts) + "}" if opts else ""))
    return ",".join(items)


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    changed: bool


@dataclass
class Report:
    """What the manager observed: per-pass timings and node counts, rewrites that fired."""

    passes: list[PassRecord] = field(default_factory=list)
    rewrites: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.rewrites[key] = self.rewrites.get(key, 0) + n

    def note(self, key: str, n: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + n

    def __str__(self) -> str:
        lines = [f"{'pass':<16}{'ms':>9}{'nodes':>14}"]
        for r in self.passes:
            lines.append(f"{r.name:<16}{r.seconds * 1e3:>9.2f}{r.nodes_before:>7}->{r.nodes_after:<6}")
        if self.rewrites:
            lines.append("rewrites: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.rewrites.items())))
        if self.notes:
            lines.append("notes: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.notes.items())))
        return "\n".join(lines)


_current_report: list[Report] = []


def current_report() -> Report | None:
    """The report of the pipeline running now (passes call ``count`` on it)."""
    return _current_report[-1] if _current_report else None


def count_rewrite(key: str, n: int = 1) -> None:
    rep = current_report()
    if rep is not None:
        rep.count(key, n)


def note(key: str, n: int = 1) -> None:
    rep = current_report()
    if rep is not None:
        rep.note(key, n)


@dataclass
class PassManager:
    passes: list[Pass]
    verify_each: bool = False
    print_changed: bool = False
    dump_dir: str | None = None
    report: Report = field(default_factory=Report)

    @property
    def pipeline(self) -> str:
        return pipeline_text(self.passes)

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        current = list(outputs)
        dump_dir = self.dump_dir or os.environ.get("SYMGRAD_DUMP_DIR")
        print_changed = self.print_changed or bool(os.environ.get("SYMGRAD_PRINT_CHANGED"))
        if dump_dir:
            os.makedirs(dump_dir, exist_ok=True)
            with open(os.path.join(dump_dir, "00-input.txt"), "w") as fh:
                fh.write(to_text(current))
        _current_report.append(self.report)
        cache = order_cache()
        cache.__enter__()
        n_before = count_nodes(current)
        try:
            for k, p in enumerate(self.passes, start=1):
                before_text = to_text(current) if (print_changed or dump_dir) else None
                t0 = time.perf_counter()
                try:
                    after = p.run(current)
                    if self.verify_each:
                        verify(after)
                except Exception as exc:
                    path = self._reproducer(current, p, exc)
                    raise PassError(
                        f"pass {p.name!r} failed: {type(exc).__name__}: {exc}\n"
                        f"  reproducer: {path}"
                    ) from exc
                dt = time.perf_counter() - t0
                changed = any(a is not b for a, b in zip(after, current))
                n_after = count_nodes(after) if changed else n_before
                self.report.passes.append(PassRecord(p.name, dt, n_before, n_after, changed))
                n_before = n_after
                if before_text is not None:
                    after_text = to_text(after)
                    if dump_dir:
                        with open(os.path.join(dump_dir, f"{k:02d}-{p.name}.txt"), "w") as fh:
                            fh.write(after_text)
                    if print_changed and after_text != before_text:
                        diff = difflib.unified_diff(before_text.splitlines(), after_text.splitlines(),
                                                    f"before {p.name}", f"after {p.name}", lineterm="")
                        print("\n".join(diff))
                current = after
        finally:
            cache.__exit__()
            _current_report.pop()
        return current

    def _reproducer(self, outputs: Sequence[Tensor], p: Pass, exc: BaseException) -> str:
        fd, path = tempfile.mkstemp(prefix=f"symgrad-repro-{p.name}-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"# pipeline: {pipeline_text([p])}\n")
            fh.write(f"# full pipeline: {self.pipeline}\n")
            fh.write(f"# error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n")
            fh.write(to_text(outputs))
        return path


def run_pipeline(outputs: Sequence[Tensor], pipeline: str, **options: Any) -> tuple[list[Tensor], Report]:
    pm = PassManager(parse_pipeline(pipeline), **options)
    out = pm.run(outputs)
    return out, pm.report


__all__ = ["PASSES", "Pass", "PassManager", "Report", "SymgradError", "parse_pipeline",
           "pipeline_text", "register_pass", "run_pipeline"]
