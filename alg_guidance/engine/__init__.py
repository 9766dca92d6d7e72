"""The ALG engine: what one denoiser call runs, how its branches merge, and the state of one run; pure torch.

Every integration - the diffusers hook, the k-diffusion guided denoiser, the ComfyUI nodes - translates its
calls into roles, asks [`Run.plan`][alg_guidance.engine.run.Run.plan] what to evaluate
([`plan_step`][alg_guidance.engine.plan.plan_step] decides), evaluates the branches in the calls
[`StepPlan.calls`][alg_guidance.engine.plan.StepPlan.calls] groups (inputs merged by
[`merge_inputs`][alg_guidance.engine.batching.merge_inputs]), and hands back what
[`Run.settle`][alg_guidance.engine.run.Run.settle] returns. None re-derives the rule.
"""

from __future__ import annotations

from .batching import merge_inputs, named_inputs, split_batch
from .conditions import LowPassedConditions
from .plan import (
    Branch,
    GuidanceScale,
    Mode,
    Role,
    ShiftTarget,
    StepPlan,
    alg_prediction,
    plan_step,
    resolve_mode,
    shifted,
    uncond_side,
)
from .progress import SigmaProgress
from .run import Run

__all__ = [
    "Branch",
    "GuidanceScale",
    "LowPassedConditions",
    "Mode",
    "Role",
    "ShiftTarget",
    "Run",
    "SigmaProgress",
    "StepPlan",
    "alg_prediction",
    "merge_inputs",
    "named_inputs",
    "plan_step",
    "resolve_mode",
    "shifted",
    "split_batch",
    "uncond_side",
]
