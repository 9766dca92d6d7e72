r"""The plan of one denoiser call under ALG, and the one rule that merges its branches.

Notation: `D(x, I, c)` is the denoiser's prediction for the noisy latent `x`, the image condition `I` and the
text condition `c` (`∅` for the negative prompt); `LP_s(I)` is the condition low-passed at strength `s`; `w`
is the CFG scale. While `s > 0`, ALG predicts

    u_orig + w * (c_lp - u_lp),   u_orig = D(x, I, ∅),  u_lp = D(x, LP_s(I), ∅),  c_lp = D(x, LP_s(I), c)

and once `s = 0` it is plain CFG. Without CFG ("replace" mode) the one prediction is `D(x, LP_s(I), c)`.

Every integration (diffusers pipelines, k-diffusion samplers, ComfyUI) asks a caller's denoiser call for some
*roles* - the unconditional and/or the conditional prediction - and combines them itself as
`u + w * (c - u)`. [`plan_step`][alg_guidance.engine.plan.plan_step] decides what to evaluate for those roles,
and [`StepPlan.combine`][alg_guidance.engine.plan.StepPlan.combine] hands back, per role, the prediction that
makes the caller's own formula equal ALG for any `w` (dynamic, per-frame, or a second expert's):

    uncond -> u_orig,    cond -> c_lp + (u_orig - u_lp)

When the roles arrive in separate calls (a pipeline that calls cond, then uncond), the cond call returns
`c_lp` and the shift `u_orig - u_lp` is added to it once the uncond call has run
([`Run.settle`][alg_guidance.engine.run.Run.settle]).

That in-place correction reaches the caller only if it keeps the tensor its cond call got. A pipeline that copies
or transforms the cond prediction before its uncond call (MotifVideo's `.clone()`, Cosmos's conversion to x0 or
velocity) gets the *uncond-side* form instead (an adapter's `shift_target = "uncond"`): the cond call returns `c_lp`
unchanged, and the uncond call, knowing the scale `w` of the caller's `u + w * (c - u)` at that step, returns

    u' = (u_orig - w * u_lp) / (1 - w) = u_lp + (u_orig - u_lp) / (1 - w)

([`uncond_side`][alg_guidance.engine.plan.uncond_side]). The caller's own combination is then ALG:

    u' + w * (c_lp - u') = (1 - w) * u' + w * c_lp
                         = (1 - w) * u_lp + (u_orig - u_lp) + w * c_lp
                         = u_orig + w * (c_lp - u_lp).

It needs `w != 1` (at `w = 1` the caller's formula is `c` alone: no CFG, the `"replace"` rule's case). Any caller
combination that is affine in the two predictions with weights `1 - w` and `w` serves, whatever maps both
predictions through the same affine function first (Cosmos's x0 `c_skip * x + c_out * D`, or a velocity with the
conditioning frames overwritten): a combination `c + w (c - u)` is `u + (w + 1)(c - u)`, so its `w` here is `w + 1`.

Precision: on a step where ALG adds the shift, the cond prediction comes back in float32 (or the predictions'
dtype, if wider), not rounded to a bf16 model's dtype. The caller's own `u + w * (c - u)` then runs in float32 and
equals ALG to float32 rounding, where the reference code's arithmetic, all in bf16, rounds `c_lp - u_lp`, its
product with `w` and the sum.
Pipelines that step their latents in the prediction's dtype and hand them to the model without casting them
(HunyuanVideo 1.5, HunyuanVideo-I2V-33ch, EasyAnimate, and every pipeline served with the uncond-side form) get
their predictions back in the model's dtype instead
([`Run`][alg_guidance.engine.run.Run]'s `float32_predictions`), so that the model keeps getting its own dtype; in
the uncond-side form the rounding of `u'` adds `(w - 1)` times one rounding of `u`, the error the model's own
rounding of `u` carries into plain CFG, `(1 - w) u + w c`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ALGError

Role = Literal["cond", "uncond"]
"""Which prediction a caller asks for: the conditional (prompt) or the unconditional (negative prompt) one."""
Mode = Literal["alg", "replace"]
"""The branch rule: three branches with CFG (`"alg"`), or every branch low-passed (`"replace"`)."""
GuidanceScale = float | torch.Tensor
"""The CFG scale `w`: a float, or a tensor broadcastable to the predictions (per-frame scales)."""
ShiftTarget = Literal["cond", "uncond"]
"""Which prediction of sequential CFG carries ALG's correction: the cond one (in place), or the uncond one."""


def resolve_mode(requested: str, uses_cfg: bool) -> Mode:
    """The branch rule to run: `"alg"` (three branches) or `"replace"` (one branch per role).

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
    return requested  # type: ignore[return-value]


@dataclass(frozen=True)
class Branch:
    """One denoiser evaluation of a step: a role, with the original or the low-passed condition.

    Attributes:
        role: `"cond"` or `"uncond"`.
        low_passed: Whether the image condition is low-passed in this evaluation.
    """

    role: Role
    low_passed: bool

    def __str__(self) -> str:
        return f"{'c' if self.role == 'cond' else 'u'}_{'lp' if self.low_passed else 'orig'}"


@dataclass(frozen=True)
class StepPlan:
    """What one denoiser call evaluates, and how its outputs become the predictions the caller asked for.

    Attributes:
        roles: The predictions the caller asked for, in the caller's order.
        strength: The filter strength of this call.
        primary: One branch per role, in the caller's order: what the caller's own call computes, with the
            condition low-passed where the rule says so.
        extra: The branches ALG adds (`u_lp`, for each uncond role under the `"alg"` rule).
    """

    roles: tuple[Role, ...]
    strength: float
    primary: tuple[Branch, ...]
    extra: tuple[Branch, ...] = ()

    @property
    def passes_through(self) -> bool:
        """Whether the call runs exactly as it would without ALG (strength 0)."""
        return self.strength == 0.0

    @property
    def branches(self) -> tuple[Branch, ...]:
        """Every evaluation: the primary branches, then the extra ones."""
        return self.primary + self.extra

    def calls(self, batch_branches: bool) -> tuple[tuple[int, ...], ...]:
        """Indices into `branches`, grouped into denoiser calls.

        With `batch_branches`, one call evaluates everything; otherwise the primary branches keep the caller's
        own batch (so no call is larger than plain CFG's, and caches keyed by the caller's call see the batch
        they expect) and each extra branch runs as a call of its own.
        """
        count = len(self.primary)
        if batch_branches or not self.extra:
            return (tuple(range(count + len(self.extra))),)
        return (tuple(range(count)), *((count + index,) for index in range(len(self.extra))))

    def combine(self, outputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The prediction to hand back for each role, given the outputs of `branches` in order.

        The uncond role gets `u_orig`; the cond role gets `c_lp + (u_orig - u_lp)` when this call evaluated the
        uncond branches too, and `c_lp` otherwise (the caller pairs it with the uncond call's
        [`shift`][alg_guidance.engine.plan.StepPlan.shift]).
        """
        if len(outputs) != len(self.branches):
            raise ALGError(f"the plan evaluates {len(self.branches)} branches, got {len(outputs)} outputs")
        shift = self.shift(outputs)
        combined = []
        for role, output in zip(self.roles, outputs, strict=False):
            combined.append(shifted(output, shift) if role == "cond" and shift is not None else output)
        return tuple(combined)

    def shift(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """`u_orig - u_lp`, what ALG adds to the cond prediction (float32 at least); `None` without an extra branch."""
        if not self.extra:
            return None
        by_branch = dict(zip(self.branches, outputs, strict=True))
        u_orig, u_lp = by_branch[Branch("uncond", False)], by_branch[Branch("uncond", True)]
        precision = torch.promote_types(u_orig.dtype, torch.float32)
        return u_orig.to(precision) - u_lp.to(precision)


def uncond_side(u_orig: torch.Tensor, u_lp: torch.Tensor, guidance_scale: GuidanceScale) -> torch.Tensor:
    """The uncond prediction of the uncond-side form, `u_lp + (u_orig - u_lp) / (1 - w)`, in float32 at least.

    With it, the caller's `u' + w * (c_lp - u')` equals `u_orig + w * (c_lp - u_lp)`; the derivation is in
    [`plan`][alg_guidance.engine.plan].

    Args:
        u_orig: `D(x, I, ∅)`.
        u_lp: `D(x, LP(I), ∅)`.
        guidance_scale: `w` of the caller's `u + w * (c - u)` at this step, a float or a broadcastable tensor.

    Raises:
        ALGError: `w` is 1 (anywhere, for a tensor): the caller's formula then ignores the uncond prediction.

    Examples:
        >>> u_orig, u_lp, c_lp = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([2.0])
        >>> u = uncond_side(u_orig, u_lp, 5.0)
        >>> u + 5.0 * (c_lp - u), u_orig + 5.0 * (c_lp - u_lp)
        (tensor([-4.]), tensor([-4.]))
    """
    if bool(torch.as_tensor(guidance_scale == 1).any()):
        raise ALGError(
            "the uncond-side ALG rule needs a CFG scale w != 1 (it returns u_lp + (u_orig - u_lp) / (1 - w)); at "
            "w = 1 the pipeline's u + w (c - u) is the cond prediction alone, which is sampling without CFG: use "
            "mode 'replace' (or 'auto')"
        )
    precision = torch.promote_types(u_orig.dtype, torch.float32)
    scale = guidance_scale.to(precision) if isinstance(guidance_scale, torch.Tensor) else float(guidance_scale)
    u_lp = u_lp.to(precision)
    return u_lp + (u_orig.to(precision) - u_lp) / (1 - scale)


def shifted(cond: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The cond prediction ALG hands back, `c_lp + (u_orig - u_lp)`, in the shift's dtype (float32 at least)."""
    return cond.to(shift.dtype) + shift


def widened(prediction: torch.Tensor) -> torch.Tensor:
    """`prediction` in float32 at least: a float32 copy of a bf16 or fp16 one, the tensor itself otherwise."""
    return prediction.to(torch.promote_types(prediction.dtype, torch.float32))


def plan_step(strength: float, mode: Mode, roles: Sequence[Role], *, uncond_sees_image: bool = True) -> StepPlan:
    """The plan of a denoiser call asking for `roles` at `strength`.

    - strength 0: every role with the original condition (the call passes through untouched);
    - `"replace"`: every role with the low-passed condition;
    - `"alg"`: `c_lp` for the cond role, `u_orig` for the uncond role plus the extra branch `u_lp` - unless the
      unconditional branch carries no image at all (SVD's zero image, which every linear filter keeps at zero):
      then `u_lp = u_orig` exactly, and ALG is CFG with a low-passed conditional image.

    Args:
        strength: The schedule's strength for this call, in `[0, 1]`.
        mode: The branch rule, from [`resolve_mode`][alg_guidance.engine.plan.resolve_mode].
        roles: The predictions the caller asks for, in its order (a batched CFG call asks for both).
        uncond_sees_image: Whether the unconditional branch is conditioned on the image.

    Examples:
        >>> plan = plan_step(1.0, "alg", ["uncond", "cond"])
        >>> [str(branch) for branch in plan.branches], plan.calls(batch_branches=False)
        (['u_orig', 'c_lp', 'u_lp'], ((0, 1), (2,)))
        >>> [str(branch) for branch in plan_step(0.0, "alg", ["cond"]).branches]
        ['c_orig']
    """
    roles = tuple(roles)
    if not roles or any(role not in ("cond", "uncond") for role in roles) or len(set(roles)) != len(roles):
        raise ALGError(f"a denoiser call asks for 'cond' and/or 'uncond', each at most once, got {roles}")
    if strength == 0.0:
        return StepPlan(roles, strength, tuple(Branch(role, False) for role in roles))
    if mode == "replace":
        return StepPlan(roles, strength, tuple(Branch(role, True) for role in roles))
    primary = tuple(Branch(role, role == "cond") for role in roles)
    extra = (Branch("uncond", True),) if "uncond" in roles and uncond_sees_image else ()
    return StepPlan(roles, strength, primary, extra)


def alg_prediction(
    u_orig: torch.Tensor, c_lp: torch.Tensor, u_lp: torch.Tensor, guidance_scale: GuidanceScale
) -> torch.Tensor:
    """The ALG prediction `u_orig + w * (c_lp - u_lp)`, for a caller that knows `w` and combines itself.

    Args:
        u_orig: `D(x, I, ∅)`, the unconditional prediction with the original image condition.
        c_lp: `D(x, LP(I), c)`, the conditional prediction with the low-passed condition.
        u_lp: `D(x, LP(I), ∅)`, the unconditional prediction with the low-passed condition.
        guidance_scale: `w`, a float or a tensor broadcastable to the predictions (per-frame scales).
    """
    return u_orig + guidance_scale * (c_lp - u_lp)
