"""Where a diffusers pipeline's run stands, read from its scheduler without waiting on the device."""

from __future__ import annotations

from typing import Any

from ...adapters.schedulers import noise_levels
from ...schedules import StepState


class SchedulerClock:
    """The step state of one pipeline run, from its scheduler; made at the run's first denoiser call.

    The step index is the scheduler's `step_index` where it has one (it counts `step()` calls), and the number
    of steps started in this run otherwise, or when `counts_steps` is set (a pipeline that steps copies of its
    scheduler). Nothing here reads a device tensor, except the noise levels, which are copied once per run and
    only for schedules that use them; a step past the scheduler's timesteps (a run of more steps than the
    scheduler has, as diffusion forcing's staggered frames make) takes the noise level of its last timestep.

    Args:
        scheduler: The pipeline's scheduler, set up for the run (`set_timesteps` done).
        needs_noise_level: Whether to provide `StepState.noise_level`.
        num_steps: The number of steps of the run; `None` for the scheduler's number of timesteps.
        counts_steps: Whether to count the steps started instead of reading the scheduler's `step_index`.
    """

    def __init__(
        self, scheduler: Any, needs_noise_level: bool, num_steps: int | None = None, counts_steps: bool = False
    ) -> None:
        self.scheduler = scheduler
        self.num_steps = len(scheduler.timesteps) if num_steps is None else num_steps
        self.counts_steps = counts_steps
        self._started = 0
        self._noise_levels = noise_levels(scheduler) if needs_noise_level else None

    def _noise_level(self, step: int) -> float | None:
        if self._noise_levels is None:
            return None
        return self._noise_levels[min(step, len(self._noise_levels) - 1)]

    def states(self) -> list[StepState]:
        """The state of every step of the run."""
        return [StepState.from_step(step, self.num_steps, self._noise_level(step)) for step in range(self.num_steps)]

    def step_index(self) -> int | None:
        """The scheduler's own step index, or `None` if it does not count steps."""
        if self.counts_steps or not hasattr(type(self.scheduler), "step_index"):
            return None
        return self.scheduler.step_index or 0

    def state(self, starts_step: bool) -> StepState:
        """The state of the current call; `starts_step` marks the first denoiser call of a step."""
        if starts_step:
            self._started += 1
        index = self.step_index()
        step = max(min(self._started - 1 if index is None else index, self.num_steps - 1), 0)
        return StepState.from_step(step, self.num_steps, self._noise_level(step))
