"""The pass manager and the passes, registered by name for pipeline text."""

from symgrad.passes.autodiff import Autodiff
from symgrad.passes.canonicalize import Canonicalize
from symgrad.passes.cse import CSE
from symgrad.passes.dce import DCE
from symgrad.passes.fold import Fold
from symgrad.passes.manager import (
    PASSES,
    PassManager,
    Report,
    known_passes,
    parse_pipeline,
    pipeline_text,
    register_pass,
    run_pipeline,
)
from symgrad.passes.simplify import Simplify
from symgrad.passes.stabilize import Stabilize

register_pass(Autodiff)
register_pass(DCE)
for _cls in (Canonicalize, CSE, Fold, Simplify, Stabilize):
    register_pass(_cls)

DEFAULT_PIPELINE = "canonicalize,stabilize,autodiff,stabilize,canonicalize,fold,cse,dce"

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "PassManager",
    "Report",
    "known_passes",
    "parse_pipeline",
    "pipeline_text",
    "register_pass",
    "run_pipeline",
]
