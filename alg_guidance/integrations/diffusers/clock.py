"""Where a diffusers pipeline's sampling stands, read from its scheduler without waiting on the device."""

from __future__ import annotations

from typing import Any

import torch

from ...errors import ALGError
from ...schedules import StepState


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


class SchedulerClock:
    """The step state of a pipeline's run, from its scheduler.

    A new run is recognised by the scheduler's `timesteps` being a new tensor (`set_timesteps` makes one).
    The step index is the scheduler's `step_index` where it has one (it counts `step()` calls), and the
    number of steps started in this run otherwise. Nothing here reads a device tensor, except the noise
    levels, which are copied once per run and only for schedules that use them.

    Args:
        pipeline: The diffusers pipeline.
        needs_noise_level: Whether to provide `StepState.noise_level`.
    """

    def __init__(self, pipeline: Any, needs_noise_level: bool) -> None:
        self.pipeline = pipeline
        self.needs_noise_level = needs_noise_level
        self._timesteps: torch.Tensor | None = None
        self._started = 0
        self._noise_levels: list[float] | None = None

    def new_run(self) -> bool:
        """Whether the scheduler was set up for a new run since the last call (true once per run)."""
        timesteps = self.pipeline.scheduler.timesteps
        if timesteps is self._timesteps:
            return False
        self._timesteps = timesteps
        self._started = 0
        self._noise_levels = None
        return True

    def forget(self) -> None:
        """Treat the next call as the start of a new run."""
        self._timesteps = None

    def step_index(self) -> int | None:
        """The scheduler's own step index, or `None` if it does not count steps."""
        scheduler = self.pipeline.scheduler
        if not hasattr(type(scheduler), "step_index"):
            return None
        return scheduler.step_index or 0

    def state(self, starts_step: bool) -> StepState:
        """The state of the current call; `starts_step` marks the first denoiser call of a step."""
        if starts_step:
            self._started += 1
        num_steps = len(self._timesteps)
        index = self.step_index()
        step = min(self._started - 1 if index is None else index, num_steps - 1)
        noise_level = None
        if self.needs_noise_level:
            if self._noise_levels is None:
                self._noise_levels = noise_levels(self.pipeline.scheduler)
            noise_level = self._noise_levels[step]
        return StepState.from_step(max(step, 0), num_steps, noise_level)
