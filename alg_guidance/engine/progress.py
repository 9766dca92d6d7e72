"""Where sampling stands, read from the sigma a sampler hands the denoiser (k-diffusion's, ComfyUI's).

k-diffusion's samplers (and ComfyUI's, which are k-diffusion's) evaluate the denoiser once (euler, lms, dpmpp_2m,
the multistep SDE samplers), twice (heun, dpm_2, dpmpp_2s_ancestral, dpmpp_sde) or a varying number of times
(dpm_fast, dpm_adaptive) per step, and some at sigmas between the schedule's (dpm_2's midpoints, DPM-Solver's
stages) or above it (euler and heun with `s_churn`). Counting calls would mistake the step; the sigma of a call
says exactly where sampling is.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence

import torch

from ..errors import ALGError
from ..schedules import StepState, noise_level_from_sigma


class SigmaProgress:
    """The [`StepState`][alg_guidance.schedules.StepState] of any sigma, given the sampler's sigma schedule.

    The schedule `sigmas` is what k-diffusion's samplers take: `N + 1` decreasing values whose last one (usually
    0) ends sampling, so step `i` starts at `sigmas[i]` for `i < N`. A call at `sigma == sigmas[i]` has
    step `i` and progress `i / (N - 1)`, the definition of the ALG reference and of the diffusers
    integration. A sigma between `sigmas[i]` and `sigmas[i + 1]` gets a fractional position `i + f`,
    interpolated linearly in `log(sigma)`: the samplers place their intermediate evaluations in log-sigma
    (DPM-Solver's time is `-log(sigma)`; dpm_2 evaluates at the geometric mean of two sigmas, which lands at
    `f = 1/2`), so the interpolation reads them where the samplers put them. Sigmas above the first step's get
    progress 0, those below the last step's get progress 1. The noise level is `sigma / (1 + sigma)` for
    k-diffusion's variance-exploding sigma; samplers whose sigma of a flow-matching model is the time `t` itself
    (ComfyUI's) pass `noise_level=float`.

    Args:
        sigmas: The sampler's schedule, a 1-D tensor or sequence of at least two decreasing values, every one
            positive but the last.
        noise_level: The normalized noise level of a sigma.

    Raises:
        ALGError: The schedule is too short, not decreasing, or holds a non-positive sigma before its end.

    Examples:
        >>> progress = SigmaProgress([10.0, 5.0, 2.0, 1.0, 0.0])
        >>> progress.state(5.0)
        StepState(step=1, num_steps=4, progress=0.3333333333333333, noise_level=0.8333333333333334)
        >>> round(progress.state(math.sqrt(10.0 * 5.0)).progress, 6)  # dpm_2's midpoint of step 0: 0.5 / 3
        0.166667
    """

    def __init__(
        self, sigmas: torch.Tensor | Sequence[float], noise_level: Callable[[float], float] = noise_level_from_sigma
    ) -> None:
        values = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).reshape(-1).tolist()
        if len(values) < 2:
            raise ALGError(f"a sigma schedule needs at least two values (a step and its end), got {values}")
        steps = values[:-1]
        if not all(math.isfinite(s) and s > 0 for s in steps):
            raise ALGError(f"every sigma of the schedule but the last must be positive and finite, got {values}")
        if any(later >= earlier for earlier, later in itertools.pairwise(values)):
            raise ALGError(f"the sigma schedule must decrease strictly, got {values}")
        self.sigmas = values
        self.noise_level = noise_level
        self.num_steps = len(steps)
        self._rising_log_sigmas = [-math.log(s) for s in steps]  # increasing, for bisect

    def position(self, sigma: float) -> float:
        """The fractional step index of `sigma`, in `[0, N - 1]`."""
        if sigma >= self.sigmas[0]:
            return 0.0
        if sigma <= self.sigmas[self.num_steps - 1]:
            return float(self.num_steps - 1)
        rising = -math.log(sigma)
        after = bisect.bisect_left(self._rising_log_sigmas, rising)  # steps[after - 1] > sigma >= steps[after]
        before = after - 1
        low, high = self._rising_log_sigmas[before], self._rising_log_sigmas[after]
        return before + (rising - low) / (high - low)

    def state(self, sigma: float) -> StepState:
        """The step state of a denoiser call at `sigma`."""
        position = self.position(sigma)
        step = min(int(position), self.num_steps - 1)
        progress = position / max(self.num_steps - 1, 1)
        return StepState(step, self.num_steps, progress, self.noise_level(sigma))

    def __repr__(self) -> str:
        return f"SigmaProgress({self.num_steps} steps, sigma {self.sigmas[0]:g} -> {self.sigmas[-1]:g})"
