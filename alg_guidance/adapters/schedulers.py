"""What the integrations read off diffusers schedulers: the parameterization, and the noise level of each step."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ALGError


def is_flow_matching(scheduler: Any) -> bool:
    """Whether the scheduler's sigmas are flow-matching times `t` rather than noise-to-signal ratios."""
    config = getattr(scheduler, "config", {})
    return (
        "FlowMatch" in type(scheduler).__name__
        or bool(config.get("use_flow_sigmas", False))
        or config.get("prediction_type") == "flow_prediction"
    )


def noise_levels(scheduler: Any) -> list[float]:
    """The normalized noise level of every timestep of the scheduler's current run.

    Flow-matching schedulers give `t` directly; others give `sigma / (1 + sigma)` from their sigmas or,
    for DDIM-style schedulers without sigmas, from `alphas_cumprod` at each timestep. Copying a schedule
    that lives on the GPU to the CPU happens once per run.
    """
    timesteps = scheduler.timesteps
    sigmas = getattr(scheduler, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and len(sigmas) >= len(timesteps):
        values = sigmas[: len(timesteps)].detach().to("cpu", torch.float64)
        if is_flow_matching(scheduler):
            return values.clamp(0, 1).tolist()
        return (values / (1 + values)).tolist()
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if isinstance(alphas_cumprod, torch.Tensor):
        alphas = alphas_cumprod.to("cpu", torch.float64)[timesteps.detach().to("cpu").long()]
        sigma = ((1 - alphas) / alphas).sqrt()
        return (sigma / (1 + sigma)).tolist()
    raise ALGError(
        f"{type(scheduler).__name__} exposes neither sigmas nor alphas_cumprod, so the noise level is unknown; "
        "use a step-based schedule (step, linear, cosine, exponential)"
    )
