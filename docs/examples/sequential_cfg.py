"""The rule of How ALG works, run by the engine for a pipeline that calls cond and uncond separately.

Whichever call comes first, the pipeline's own u + w (c - u) of what it is handed is ALG's
u_orig + w (c_lp - u_lp), for any w; the cond prediction it is handed is float32.
"""

import torch

import alg_guidance as alg
from alg_guidance.engine import Run

torch.manual_seed(0)
predictions = {branch: torch.randn(1, 16, 3, 8, 8, dtype=torch.bfloat16) for branch in ("u_orig", "u_lp", "c_lp")}
first_step = alg.StepState.from_step(0, 50)  # the wan2.1 preset filters at full strength here

for order in (["cond", "uncond"], ["uncond", "cond"]):
    run = Run(alg.resolve_config("wan2.1"), mode="alg")
    handed = {}
    for role in order:  # one denoiser call per role, as Wan's pipeline makes them
        plan = run.plan(first_step, [role])
        outputs = [predictions[str(branch)] for branch in plan.branches]  # what the model returns per branch
        (handed[role],) = run.settle(first_step.step, plan, outputs)
    cond, uncond = handed["cond"], handed["uncond"]
    assert cond.dtype == torch.float32
    u_orig, u_lp, c_lp = (predictions[branch].float() for branch in ("u_orig", "u_lp", "c_lp"))
    for w in (1.0, 5.0):
        pipeline_cfg = uncond + w * (cond - uncond)
        torch.testing.assert_close(pipeline_cfg, u_orig + w * (c_lp - u_lp))
    print(f"{' then '.join(order)}: the pipeline's CFG equals ALG")
