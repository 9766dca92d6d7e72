r"""The ALG rule itself, in pure torch: strengths, low-passed conditions and how branches combine.

Notation: `D(x, I, c)` is the denoiser's prediction for the noisy latent `x`, the image condition `I`
and the text condition `c` (`∅` for the negative prompt); `LP_s(I)` is the condition low-passed at strength
`s = schedule(step)`; `w` is the CFG scale. While `s > 0`, ALG predicts

    u_orig + w * (c_lp - u_lp),   u_orig = D(x, I, ∅),  u_lp = D(x, LP_s(I), ∅),  c_lp = D(x, LP_s(I), c)

and once `s = 0` it is plain CFG. Without CFG ("replace" mode) the one prediction is `D(x, LP_s(I), c)`.
Pipelines combine `u + w * (c - u)` themselves, so an integration hands them outputs that make that formula
produce ALG. [`batched_outputs`][alg_guidance.guidance.batched_outputs] gives `(u_orig, c_lp + u_orig - u_lp)`
for any `w`; the diffusers integration uses it for batched pipelines, and for sequential ones (cond call, then
uncond call) it writes that cond output into the cond prediction the pipeline still holds, so it never needs
`w`. [`sequential_uncond`][alg_guidance.guidance.sequential_uncond] is the alternative for a caller that knows
`w` and can only change what the uncond call returns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Literal

import torch

from .config import ALGConfig
from .errors import ALGError
from .schedules import StepState

Mode = Literal["alg", "replace"]
GuidanceScale = float | torch.Tensor


def resolve_mode(requested: str, uses_cfg: bool) -> Mode:
    """The branch rule to run: `"alg"` (three branches) or `"replace"` (one branch).

    Args:
        requested: The config's `mode`: `"auto"`, `"alg"` or `"replace"`.
        uses_cfg: Whether the model is sampled with classifier-free guidance.

    Raises:
        ALGError: `"alg"` was requested for a model sampled without CFG.
    """
    if requested == "auto":
        return "alg" if uses_cfg else "replace"
    if requested == "alg" and not uses_cfg:
        raise ALGError(
            "mode 'alg' combines CFG branches, but this model is sampled without classifier-free guidance "
            "(guidance scale <= 1 or guidance-distilled); use mode 'auto' or 'replace'"
        )
    return requested


def alg_prediction(
    u_orig: torch.Tensor, c_lp: torch.Tensor, u_lp: torch.Tensor, guidance_scale: GuidanceScale
) -> torch.Tensor:
    """The ALG prediction `u_orig + w * (c_lp - u_lp)`.

    Args:
        u_orig: `D(x, I, ∅)`, the unconditional prediction with the original image condition.
        c_lp: `D(x, LP(I), c)`, the conditional prediction with the low-passed condition.
        u_lp: `D(x, LP(I), ∅)`, the unconditional prediction with the low-passed condition.
        guidance_scale: `w`, a float or a tensor broadcastable to the predictions (per-frame scales).
    """
    return u_orig + guidance_scale * (c_lp - u_lp)


def batched_outputs(u_orig: torch.Tensor, c_lp: torch.Tensor, u_lp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The `(uncond, cond)` pair to return to a pipeline that batches `[uncond, cond]` in one call.

    The pipeline's own `uncond + w * (cond - uncond)` then equals
    [`alg_prediction`][alg_guidance.guidance.alg_prediction] for any `w`, including dynamic and per-frame
    guidance scales it computes itself: `(u_orig, c_lp + u_orig - u_lp)`.
    """
    return u_orig, c_lp + (u_orig - u_lp)


def sequential_uncond(u_orig: torch.Tensor, u_lp: torch.Tensor, guidance_scale: GuidanceScale) -> torch.Tensor:
    """What to return from the unconditional call of a pipeline that calls cond, then uncond.

    Given `c_lp` from the conditional call, the pipeline's `uncond + w * (c_lp - uncond)` equals
    [`alg_prediction`][alg_guidance.guidance.alg_prediction] when `uncond = u_lp + (u_orig - u_lp) / (1 - w)`.

    Raises:
        ALGError: `w == 1`, where the pipeline's formula ignores the unconditional branch altogether.
    """
    if not isinstance(guidance_scale, torch.Tensor) and guidance_scale == 1:
        raise ALGError("a CFG scale of exactly 1 ignores the unconditional branch; ALG runs in 'replace' mode there")
    return u_lp + (u_orig - u_lp) / (1 - guidance_scale)


class LowPass:
    """One sampling run's low-passing: the schedule's strength per step, the filtered condition per strength.

    The condition of an image-to-video run does not change between steps, so each distinct strength is
    filtered (and, in pixel space, encoded) once per run; call [`reset`][alg_guidance.guidance.LowPass.reset]
    when a new run starts.

    Args:
        config: The ALG configuration.

    Examples:
        >>> import torch
        >>> low_pass = LowPass(ALGConfig())
        >>> strength = low_pass.strength(StepState.from_step(0, 50))
        >>> condition = torch.randn(1, 20, 3, 8, 8)
        >>> low_pass(condition, strength) is low_pass(condition, strength)
        True
    """

    def __init__(self, config: ALGConfig) -> None:
        self.config = config
        self._conditions: dict[Hashable, torch.Tensor] = {}

    def strength(self, state: StepState) -> float:
        """The schedule's strength at `state`, checked to be a float in `[0, 1]`."""
        value = self.config.schedule(state)
        if isinstance(value, torch.Tensor) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ALGError(
                f"schedule {self.config.schedule.kind!r} returned {value!r} at {state}; "
                "a schedule must return a Python float in [0, 1]"
            )
        return float(value)

    def __call__(self, condition: torch.Tensor, strength: float, *, key: Hashable = "image") -> torch.Tensor:
        """The latent condition low-passed at `strength`: `condition` itself at 0, else computed once per run.

        Args:
            condition: The latent condition to filter.
            strength: The filter strength in `[0, 1]`.
            key: Tells apart conditions filtered in the same run (say, first and last frame).
        """
        if strength == 0.0:
            return condition
        cache_key = (key, strength, condition.shape, condition.dtype, condition.device)
        if cache_key not in self._conditions:
            self._conditions[cache_key] = self.config.filter(condition, strength)
        return self._conditions[cache_key]

    def encoded(self, strength: float, encode: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]):
        """A pixel-space condition at `strength`, encoded once per run and strength.

        Args:
            strength: The filter strength in `[0, 1]`.
            encode: Builds the latent condition from the run's images, given the filter at `strength` to
                apply to each of them before encoding.
        """
        cache_key = ("pixels", strength)
        if cache_key not in self._conditions:
            self._conditions[cache_key] = encode(lambda image: self.config.filter(image, strength))
        return self._conditions[cache_key]

    def reset(self) -> None:
        """Forget the filtered conditions: a new run (with a new image) starts."""
        self._conditions.clear()
