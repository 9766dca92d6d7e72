"""Strength schedules: how strongly to low-pass the image condition at each denoising step.

A schedule is a frozen pydantic model called as `schedule(state)` with a
[`StepState`][alg_guidance.schedules.StepState]; it returns a strength in `[0, 1]`. The step-based
schedules read `state.progress = i / (N - 1)`, the definition of the ALG reference code;
[`Adaptive`][alg_guidance.schedules.Adaptive] reads the normalized noise level instead, so that one setting
means the same thing under any step count, sampler or timestep shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ALGError
from .hookspecs import hookimpl

Unit = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


@dataclass(frozen=True)
class StepState:
    """Where sampling stands when the denoiser is called.

    Args:
        step: The index of the current step, from 0.
        num_steps: The number of steps in the run.
        progress: How far sampling has come, in `[0, 1]`; `step / (num_steps - 1)` for a step-based sampler
            (see [`from_step`][alg_guidance.schedules.StepState.from_step]), fractional between steps for samplers that
            evaluate the denoiser at intermediate noise levels.
        noise_level: The normalized noise level in `[0, 1]`, 1 being pure noise: the flow-matching time `t`,
            or `sigma / (1 + sigma)` for a noise-to-signal ratio `sigma`. `None` when the caller cannot tell.
    """

    step: int
    num_steps: int
    progress: float
    noise_level: float | None = None

    def __post_init__(self) -> None:
        if self.num_steps < 1 or not 0 <= self.step < self.num_steps:
            raise ValueError(f"step {self.step} is outside a run of {self.num_steps} steps")
        if not 0.0 <= self.progress <= 1.0:
            raise ValueError(f"progress must lie in [0, 1], got {self.progress}")
        if self.noise_level is not None and not 0.0 <= self.noise_level <= 1.0:
            raise ValueError(f"noise_level must lie in [0, 1] or be None, got {self.noise_level}")

    @classmethod
    def from_step(cls, step: int, num_steps: int, noise_level: float | None = None) -> StepState:
        """The state at step `step` of `num_steps`, with the reference's progress `step / max(num_steps - 1, 1)`.

        Examples:
            >>> StepState.from_step(10, 50).progress
            0.20408163265306123
        """
        return cls(step, num_steps, step / max(num_steps - 1, 1), noise_level)


def noise_level_from_sigma(sigma: float) -> float:
    """The normalized noise level `sigma / (1 + sigma)` of a noise-to-signal ratio `sigma` (k-diffusion's sigma).

    It equals the flow-matching time `t` when `sigma = t / (1 - t)`, and maps an infinite sigma to 1.

    Examples:
        >>> noise_level_from_sigma(1.0)
        0.5
    """
    return 1.0 if math.isinf(sigma) else sigma / (1.0 + sigma)


class Schedule(BaseModel):
    """Base class of every strength schedule.

    Subclasses declare `kind: Literal["name"] = "name"`, their parameters as validated fields, and
    implement `__call__(state) -> float`, returning a value in `[0, 1]`. A schedule that reads
    `state.noise_level` sets `uses_noise_level = True`; it is then given the noise level or refuses clearly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uses_noise_level: ClassVar[bool] = False

    kind: str

    def __call__(self, state: StepState) -> float:
        """The strength at `state`, in `[0, 1]`."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(state)")


class Step(Schedule):
    """Full strength while progress lies in `[start, end]`, zero elsewhere: the reference's "interval".

    With 50 steps, `end=0.2` is active for the first 10 steps, `end=0.1` for 5 and `end=0.04` for 2.

    Attributes:
        start: The progress where the window opens, in `[0, 1]`, at most `end`. Default `0.0`.
        end: The progress where the window closes (included), in `[0, 1]`. Default `0.1`.

    Examples:
        >>> [Step(end=0.2)(StepState.from_step(i, 50)) for i in (9, 10)]
        [1.0, 0.0]
    """

    kind: Literal["step"] = "step"
    start: Unit = 0.0
    end: Unit = 0.1

    @model_validator(mode="after")
    def _start_before_end(self) -> Step:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) must not exceed end ({self.end})")
        return self

    def __call__(self, state: StepState) -> float:
        """1 inside the window, 0 outside."""
        return 1.0 if self.start <= state.progress <= self.end else 0.0


class Linear(Schedule):
    """A straight ramp from `start_weight` at progress 0 to `end_weight` at progress `end`, constant after.

    Attributes:
        start_weight: The strength at progress 0, in `[0, 1]`. Default `1.0`.
        end_weight: The strength from progress `end` on, in `[0, 1]`. Default `0.0`.
        end: The progress where the ramp ends, in `(0, 1]`. Default `0.5`.

    Examples:
        >>> Linear(end=0.5)(StepState.from_step(1, 5))
        0.5
    """

    kind: Literal["linear"] = "linear"
    start_weight: Unit = 1.0
    end_weight: Unit = 0.0
    end: Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)] = 0.5

    def __call__(self, state: StepState) -> float:
        """The ramp's value at `state.progress`."""
        if state.progress >= self.end:
            return self.end_weight
        fraction = state.progress / self.end
        return self.start_weight * (1 - fraction) + self.end_weight * fraction


class Cosine(Schedule):
    """A half cosine from 1 at progress 0 down to 0 at progress `end`, zero after.

    Attributes:
        end: The progress where the strength reaches 0, in `(0, 1]`. Default `0.2`.

    Examples:
        >>> round(Cosine(end=0.5)(StepState.from_step(1, 5)), 6)
        0.5
    """

    kind: Literal["cosine"] = "cosine"
    end: Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)] = 0.2

    def __call__(self, state: StepState) -> float:
        """`(1 + cos(pi * progress / end)) / 2` before `end`, 0 from there on."""
        if state.progress >= self.end:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * state.progress / self.end))


class Exponential(Schedule):
    """Exponential decay `exp(-rate * progress)`; values below `floor` become 0.

    With `floor=0` (the default) it is the reference's exponential schedule, which never reaches zero and
    so keeps the extra guidance branch on every step; a small floor such as 0.01 ends it.

    Attributes:
        rate: The decay per unit of progress, a finite number in `[0, inf)`; 0 keeps full strength, 10 falls to
            0.37 at progress 0.1. Default `10.0`.
        floor: The smallest strength kept; lower ones become 0. In `[0, 1]`. Default `0.0`.

    Examples:
        >>> round(Exponential(rate=10.0)(StepState.from_step(49, 50)), 6)
        4.5e-05
    """

    kind: Literal["exponential"] = "exponential"
    rate: NonNegative = 10.0
    floor: Unit = 0.0

    def __call__(self, state: StepState) -> float:
        """The decayed strength, or 0 below `floor`."""
        value = math.exp(-self.rate * state.progress)
        return value if value >= self.floor else 0.0


class Constant(Schedule):
    """The same strength at every step (the reference's schedule "none" with `value=1`).

    Attributes:
        value: The strength, in `[0, 1]`. Default `1.0`.

    Examples:
        >>> Constant(value=0.5)(StepState.from_step(3, 10))
        0.5
    """

    kind: Literal["constant"] = "constant"
    value: Unit = 1.0

    def __call__(self, state: StepState) -> float:
        """`value`, whatever the state."""
        return self.value


class Adaptive(Schedule):
    """Strength from the noise level rather than the step index.

    Full strength while the normalized noise level is at least `threshold + ramp`, zero below `threshold`,
    linear in between. Because it reads the noise level, the filtered window is the same whatever the step
    count, the sampler or the timestep shift. Wan 2.1's official window (the first 10 of 50 steps) ends
    at noise level 0.93 with timestep shift 3 and 0.96 with shift 5.

    Attributes:
        threshold: The noise level below which the strength is 0, in `[0, 1]`. Default `0.9`.
        ramp: The width, in noise level, of the linear rise from 0 at `threshold` to 1 at `threshold + ramp`, in
            `[0, 1]` with `threshold + ramp <= 1`; 0 switches at once. Default `0.0`.

    Examples:
        >>> Adaptive(threshold=0.9)(StepState.from_step(3, 50, noise_level=0.95))
        1.0
    """

    kind: Literal["adaptive"] = "adaptive"
    uses_noise_level: ClassVar[bool] = True
    threshold: Unit = 0.9
    ramp: Unit = 0.0

    @model_validator(mode="after")
    def _ramp_within_range(self) -> Adaptive:
        if self.threshold + self.ramp > 1.0:
            raise ValueError(f"threshold + ramp ({self.threshold} + {self.ramp}) must not exceed 1")
        return self

    def __call__(self, state: StepState) -> float:
        """1 above `threshold + ramp`, 0 below `threshold`, linear in between."""
        if state.noise_level is None:
            raise ALGError(
                "the adaptive schedule needs the noise level, but the caller did not provide one; "
                "use a step-based schedule (step, linear, cosine) or a sampler that reports its noise level"
            )
        if state.noise_level < self.threshold:
            return 0.0
        if self.ramp == 0.0 or state.noise_level >= self.threshold + self.ramp:
            return 1.0
        return (state.noise_level - self.threshold) / self.ramp


BUILTIN_SCHEDULES = (Step, Linear, Cosine, Exponential, Constant, Adaptive)


@hookimpl
def alg_register_schedules(register) -> None:
    """Register the builtin schedules."""
    for schedule_class in BUILTIN_SCHEDULES:
        register(schedule_class)
