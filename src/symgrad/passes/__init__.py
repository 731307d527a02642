"""The pass manager and the passes, registered by name for pipeline text."""

from symgrad.passes.autodiff import Autodiff
from symgrad.passes.dce import DCE
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

register_pass(Autodiff)
register_pass(DCE)

DEFAULT_PIPELINE = "autodiff,dce"

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
