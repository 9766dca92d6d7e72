"""The record of one sampling run under ALG.

An integration makes a [`Run`][alg_guidance.engine.run.Run] when a sampling run starts and drops it when the run
ends: it holds everything the engine accumulates over a run (the low-passed conditions, the prediction of a call
waiting for its partner), so that nothing of a run outlives it or leaks into another run, another pipeline or
another thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config import ALGConfig
from ..errors import ALGError
from ..registry import Registry
from ..schedules import StepState
from .conditions import LowPassedConditions
from .plan import GuidanceScale, Mode, Role, ShiftTarget, StepPlan, plan_step, shifted, uncond_side, widened


class Run:
    """One sampling run's ALG state.

    Args:
        config: The ALG configuration.
        mode: The branch rule for this run.
        registry: The registry the config's plugins came from (to name a faulty plugin's provider).
        shift_target: Where a step whose roles come in separate calls gets ALG's correction: `"cond"` (the shift
            `u_orig - u_lp` added to the cond prediction) or `"uncond"` (the uncond call returns
            [`uncond_side`][alg_guidance.engine.plan.uncond_side]'s `u'`, the cond call `c_lp` unchanged).
        float32_predictions: Whether predictions may come back in float32 (the default); `False` keeps each in its
            branch output's dtype, for callers that feed their latents to the model without casting them.
        perturbed_calls: Whether the caller also makes perturbed-guidance calls
            ([`settle_perturbed`][alg_guidance.engine.run.Run.settle_perturbed]): each step's shift is then kept
            from its CFG call.

    Attributes:
        config: The ALG configuration.
        mode: `"alg"` or `"replace"`.
        shift_target: `"cond"` or `"uncond"`.
        conditions: The run's strengths and low-passed conditions.
    """

    def __init__(
        self,
        config: ALGConfig,
        mode: Mode,
        registry: Registry | None = None,
        *,
        shift_target: ShiftTarget = "cond",
        float32_predictions: bool = True,
        perturbed_calls: bool = False,
    ) -> None:
        if shift_target not in ("cond", "uncond"):
            raise ALGError(f"shift_target is 'cond' or 'uncond', got {shift_target!r}")
        self.config = config
        self.mode = mode
        self.shift_target = shift_target
        self.float32_predictions = float32_predictions
        self.perturbed_calls = perturbed_calls
        self.conditions = LowPassedConditions(config, registry)
        self._waiting: tuple[int, Role, torch.Tensor] | None = None
        self._step_shifts: tuple[int, dict[int, torch.Tensor]] | None = None

    def plan(self, state: StepState, roles: Sequence[Role], *, uncond_sees_image: bool = True) -> StepPlan:
        """The plan of a denoiser call at `state` asking for `roles`.

        See [`plan_step`][alg_guidance.engine.plan.plan_step], which decides it from the schedule's strength.
        """
        return plan_step(self.conditions.strength(state), self.mode, roles, uncond_sees_image=uncond_sees_image)

    def settle(
        self,
        step: int,
        plan: StepPlan,
        outputs: Sequence[torch.Tensor],
        guidance_scale: GuidanceScale | None = None,
        *,
        prediction: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        """The predictions to hand back for a call's roles, pairing calls that ask for one role each.

        A call asking for both roles is combined at once
        ([`StepPlan.combine`][alg_guidance.engine.plan.StepPlan.combine]).
        Under the `"alg"` rule, a step whose cond and uncond predictions come from two calls, in either order,
        gets the shift `u_orig - u_lp` added to its cond prediction: before it is handed back if the uncond call
        came first, else in place, into the tensor the caller still holds. That tensor is handed back in float32
        at least (see the precision note of [`plan`][alg_guidance.engine.plan]), so the shift is added exactly.
        With `shift_target="uncond"`, the cond call gets `c_lp` as it came and the uncond call
        `u_lp + (u_orig - u_lp) / (1 - w)`; the calls need no pairing.

        Args:
            step: The step index (calls of different steps never pair).
            plan: The call's plan.
            outputs: The outputs of `plan.branches`, in order.
            guidance_scale: `w` of the caller's `u + w * (c - u)` at this step; needed by an uncond call with
                `shift_target="uncond"`, ignored otherwise.
            prediction: Which of the denoiser's predictions these outputs are (0 unless it returns several, as
                LTX-2's video and audio); with `perturbed_calls`, a call with both roles keeps its shift for the
                step's perturbed calls.

        Raises:
            ALGError: An uncond call with `shift_target="uncond"` got no `guidance_scale`, or `w == 1`.
        """
        if self.perturbed_calls and len(plan.roles) == 2 and plan.extra:
            kept = self._step_shifts[1] if self._step_shifts and self._step_shifts[0] == step else {}
            self._step_shifts = (step, {**kept, prediction: plan.shift(outputs)})
        return self._in_dtype(self._settle(step, plan, outputs, guidance_scale), outputs)

    def settle_perturbed(
        self, step: int, plan: StepPlan, outputs: Sequence[torch.Tensor], *, prediction: int = 0
    ) -> torch.Tensor:
        """The prediction of a perturbed-guidance call (a cond branch with some layers skipped, as LTX-2's STG).

        Such a call enters the pipeline's guidance formula with weights that sum to one with the CFG branches', so
        under the `"alg"` rule it gets the step's shift `u_orig - u_lp`, kept from the step's batched CFG call, like
        the cond prediction: the whole formula then runs on the low-passed image, anchored at `u_orig`.

        Raises:
            ALGError: Under the `"alg"` rule, the step's CFG call has not run yet.
        """
        (perturbed,) = plan.combine(outputs)
        if self.mode != "alg":
            return perturbed
        shifts = self._step_shifts[1] if self._step_shifts and self._step_shifts[0] == step else {}
        if prediction not in shifts:
            raise ALGError("a perturbed-guidance call came before its step's CFG call, whose shift ALG adds to it")
        return self._in_dtype((shifted(perturbed, shifts[prediction]),), outputs)[0]

    def _in_dtype(
        self, predictions: tuple[torch.Tensor, ...], outputs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """`predictions` as they are, or each in its branch output's dtype without `float32_predictions`."""
        if self.float32_predictions:
            return predictions
        return tuple(prediction.to(output.dtype) for prediction, output in zip(predictions, outputs, strict=False))

    def _settle(
        self, step: int, plan: StepPlan, outputs: Sequence[torch.Tensor], guidance_scale: GuidanceScale | None
    ) -> tuple[torch.Tensor, ...]:
        combined = plan.combine(outputs)
        pairs = self.mode == "alg" and not plan.passes_through and len(plan.roles) == 1
        if not pairs or (plan.roles == ("uncond",) and not plan.extra):
            return combined
        if self.shift_target == "uncond":
            if plan.roles == ("cond",):
                return combined
            if guidance_scale is None:
                raise ALGError("the uncond-side ALG rule needs the CFG scale w of the step's uncond call")
            by_branch = dict(zip(plan.branches, outputs, strict=True))
            u_lp = by_branch[plan.extra[0]]
            return (uncond_side(combined[0], u_lp, guidance_scale),)
        role = plan.roles[0]
        if role == "uncond":
            held = plan.shift(outputs)
        else:  # the tensor the caller keeps, into which the shift is added in place
            held = widened(combined[0]) if self.float32_predictions else combined[0]
        waiting, self._waiting = self._waiting, None
        if waiting is None or waiting[0] != step or waiting[1] == role:
            self._waiting = (step, role, held)
            return (held,) if role == "cond" else combined
        if role == "cond":
            return (shifted(held, waiting[2]),)
        waiting[2].add_(held)
        return combined
