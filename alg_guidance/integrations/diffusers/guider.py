r"""ALG as a diffusers guider: [`ALGGuidance`][alg_guidance.integrations.diffusers.guider.ALGGuidance] wraps a guider.

Pipelines that take a guider (`diffusers.guiders.BaseGuidance`) - the modular Wan 2.1/2.2 image-to-video pipelines
(`guider`, and `guider_2` for Wan 2.2's second expert), the modular and standard HunyuanVideo 1.5 ones - run one
denoiser call per batch the guider prepares and hand the guider every prediction to combine. `ALGGuidance` adds
ALG's branches to those of an inner guider (classifier-free guidance, APG, CFG-Zero*, TCFG, ...), and lets the
inner guider combine:

    pred = inner(c_lp, u_lp) + (u_orig - u_lp)

For plain CFG, `inner(c, u) = u + w (c - u)`, this is `u_orig + w (c_lp - u_lp)`: exactly ALG's rule
([`plan`][alg_guidance.engine.plan]). Any other inner guider sees a consistent pair of low-passed predictions
(its projections, momentum or rescaling work on them) and its result is moved by the same shift ALG adds to plain
CFG. Without CFG (an inner guider that runs one prediction at this step, as with a step-distilled LoRA at guidance
scale 1) the one prediction is made with the low-passed condition. At strength 0 the inner guider runs alone,
untouched.

The guider cannot reach the condition channels inside `hidden_states` through its inputs: while a low-passed
batch runs, it puts a forward pre-hook on the denoiser (in `prepare_models`, removed in `cleanup_models`) that
swaps the condition for the low-passed one, where the adapter's
[`guider_layout`][alg_guidance.adapters.base.Adapter.guider_layout] says it sits; the engine's run record filters
it once per strength.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers.guiders import BaseGuidance
from diffusers.guiders.guider_utils import GuiderOutput

from ...adapters.layouts import ConditionLayout
from ...config import ALGConfig, resolve_config
from ...engine import Branch, Role, Run, StepPlan, named_inputs, plan_step, resolve_mode, shifted
from ...errors import ALGError
from ...registry import Registry, default_registry
from ...schedules import StepState

if TYPE_CHECKING:
    from diffusers.modular_pipelines.modular_pipeline import BlockState

COND, UNCOND = "pred_cond", "pred_uncond"
EXTRA = "pred_uncond_alg"
"""The identifier of ALG's extra batch: the unconditional prediction with the low-passed condition."""


@dataclass(frozen=True)
class _Step:
    """What the guider decided for the current step: the engine's plan, and which batches see the low-passed image."""

    strength: float
    plan: StepPlan
    low_passed: tuple[bool, ...] = ()


class ALGGuidance(BaseGuidance):
    r"""Adaptive Low-Pass Guidance around any diffusers guider, for pipelines that take a guider.

    While the schedule's strength `s` is positive, the inner guider combines the predictions made with the
    low-passed image condition `LP_s(I)`, and ALG moves the result by `u_orig - u_lp`:

        pred = inner(c_lp, u_lp) + (u_orig - u_lp)
        c_lp = D(x, LP_s(I), c),  u_lp = D(x, LP_s(I), ∅),  u_orig = D(x, I, ∅)

    With plain classifier-free guidance this is ALG's rule `u_orig + w (c_lp - u_lp)` (arXiv 2506.08456), with
    one extra denoiser evaluation per active step. An inner guider with more predictions (PAG's skip-layer one)
    gets each of them with the low-passed condition. When the inner guider runs the conditional prediction alone
    (guidance scale 1, its `start`/`stop` window, a step-distilled LoRA), that one prediction is made with the
    low-passed condition (mode `"replace"`); the config's `mode` can force either rule. At strength 0 the inner
    guider runs exactly as without ALG.

    The schedule sees the step, the step count, and, for noise-level schedules (`adaptive`), the noise level
    `t / num_train_timesteps` of the step's timestep `t` (the flow-matching time of the pipelines that take
    guiders). The condition is filtered in latent space; a new run starts at step 0.

    Args:
        inner: The guider that combines the predictions: a `BaseGuidance`, its config as a mapping with its
            `_class_name` (a class of `diffusers.guiders`), or `None` for `ClassifierFreeGuidance()`.
        alg: The ALG settings: an `ALGConfig`, a mapping of its fields, a preset name or a YAML/JSON path; the
            `"paper"` preset if `None`. Stored resolved, so a saved guider does not depend on the preset's later
            versions. `space` must be `"latent"`.
        adapter: The adapter (registry name) that says where the condition sits in the denoiser's inputs; `None`
            finds the one whose `guider_denoisers` holds the denoiser's class.
        num_train_timesteps: The timestep of pure noise, to read the noise level off the step's timestep. Default
            1000.

    Raises:
        ALGError: `inner` is not a guider (or names no class of `diffusers.guiders`), or `alg` asks for pixel
            space.

    Examples:
        ```python
        from diffusers.guiders import AdaptiveProjectedGuidance

        pipe.update_components(guider=alg.ALGGuidance(AdaptiveProjectedGuidance(guidance_scale=5.0), "wan2.1"))
        ```
    """

    _input_predictions: ClassVar[list[str]] = [COND, UNCOND]  # the inner guider's, plus EXTRA on steps that filter

    def __init__(
        self,
        inner: BaseGuidance | Mapping[str, Any] | None = None,
        alg: ALGConfig | Mapping[str, Any] | str | None = None,
        adapter: str | None = None,
        num_train_timesteps: int = 1000,
    ) -> None:
        self.inner = _inner_guider(inner)
        self.alg_config = resolve_config("paper" if alg is None else alg)
        if self.alg_config.space != "latent":
            raise ALGError(
                "ALGGuidance filters in latent space only (a guider never sees the pixel image); use space='latent'"
            )
        if num_train_timesteps <= 0:
            raise ALGError(f"num_train_timesteps must be positive, got {num_train_timesteps}")
        self.adapter_name = adapter
        self.num_train_timesteps = num_train_timesteps
        self._run: Run | None = None
        self._alg_step: _Step | None = None
        self._last_step = -1
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        super().__init__(enabled=self.inner._enabled)
        self.register_to_config(
            inner=_inner_config(self.inner),
            alg=self.alg_config.model_dump(mode="json"),
            adapter=adapter,
            num_train_timesteps=num_train_timesteps,
        )

    @property
    def _enabled(self) -> bool:
        """Whether the inner guider guides (diffusers' `enable()`/`disable()` act on the inner guider)."""
        return self.inner._enabled

    @_enabled.setter
    def _enabled(self, value: bool) -> None:
        self.inner._enabled = value

    def set_state(self, step: int, num_inference_steps: int, timestep: torch.Tensor) -> None:
        """Set the step on both guiders and plan it; step 0 (or a step that goes back) starts a new run."""
        super().set_state(step, num_inference_steps, timestep)
        self.inner.set_state(step, num_inference_steps, timestep)
        if self._run is None or step <= self._last_step:
            self._run = Run(self.alg_config, "alg", _registry())
        self._last_step = step
        level = None
        if self.alg_config.schedule.uses_noise_level:
            level = min(max(float(torch.as_tensor(timestep).flatten()[0]) / self.num_train_timesteps, 0.0), 1.0)
        strength = self._run.conditions.strength(StepState.from_step(step, num_inference_steps, level))
        self._alg_step = self._planned(strength, self.inner._input_predictions[: self.inner.num_conditions])

    def _planned(self, strength: float, identifiers: Sequence[str]) -> _Step:
        """The engine's plan of a step whose inner guider makes the predictions `identifiers`."""
        roles: tuple[Role, ...] = ("cond", "uncond") if UNCOND in identifiers else ("cond",)
        mode = resolve_mode(self.alg_config.mode, uses_cfg=len(roles) > 1)
        plan = plan_step(strength, mode, roles)
        by_role = {branch.role: branch.low_passed for branch in plan.primary}
        low_passed = [by_role["uncond" if identifier == UNCOND else "cond"] for identifier in identifiers]
        return _Step(strength, plan, (*low_passed, *(True for _ in plan.extra)))

    @property
    def num_conditions(self) -> int:
        """The inner guider's predictions, plus ALG's extra one on steps that filter under the three-branch rule."""
        extra = len(self._alg_step.plan.extra) if self._alg_step is not None else 0
        return self.inner.num_conditions + extra

    @property
    def is_conditional(self) -> bool:
        """The inner guider's answer for the batch being prepared."""
        return self.inner.is_conditional

    def prepare_inputs(self, data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[BlockState]:
        """The inner guider's batches, plus ALG's extra unconditional batch on steps that need it."""
        return self._with_extra(self.inner.prepare_inputs(data))

    def prepare_inputs_from_block_state(
        self, data: BlockState, input_fields: dict[str, str | tuple[str, str]]
    ) -> list[BlockState]:
        """As `prepare_inputs`, for the modular pipelines' block state."""
        return self._with_extra(self.inner.prepare_inputs_from_block_state(data, input_fields))

    def prepare_models(self, denoiser: torch.nn.Module) -> None:
        """Before a batch's denoiser call: the inner guider's preparation, and the low-passed condition where due."""
        super().prepare_models(denoiser)
        index, step = self._count_prepared - 1, self._current()
        if index < len(step.low_passed) - len(step.plan.extra):  # the extra batch is ALG's, not the inner guider's
            self.inner.prepare_models(denoiser)
        if index < len(step.low_passed) and step.low_passed[index]:
            self._low_pass_inputs(denoiser, step.plan.strength)

    def cleanup_models(self, denoiser: torch.nn.Module) -> None:
        """After a batch's denoiser call: remove the condition swap, then the inner guider's cleanup."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        step = self._current()
        if self._count_prepared - 1 < len(step.low_passed) - len(step.plan.extra):
            self.inner.cleanup_models(denoiser)

    def forward(self, **predictions: torch.Tensor) -> GuiderOutput:
        """The inner guider's combination of the predictions, moved by ALG's shift `u_orig - u_lp` where it applies."""
        step = self._current()
        if not step.plan.extra:
            return self.inner.forward(**predictions)
        u_lp = predictions.pop(EXTRA)
        u_orig = predictions[UNCOND]
        output = self.inner.forward(**{**predictions, UNCOND: u_lp})
        outputs = {
            Branch("cond", True): predictions[COND],
            Branch("uncond", False): u_orig,
            Branch("uncond", True): u_lp,
        }
        shift = step.plan.shift([outputs[branch] for branch in step.plan.branches])
        # in the inner guider's dtype: pipelines step their latents in it and may feed them to the model uncast
        pred = shifted(output.pred, shift).to(output.pred.dtype)
        return GuiderOutput(pred=pred, pred_cond=output.pred_cond, pred_uncond=output.pred_uncond)

    def get_state(self) -> dict[str, Any]:
        """The state diffusers shows in the guider's repr, with ALG's strength and branches of the current step."""
        state = super().get_state()
        if self._alg_step is not None:
            state["alg_strength"] = self._alg_step.plan.strength
            state["alg_branches"] = [str(branch) for branch in self._alg_step.plan.branches]
        return state

    def _current(self) -> _Step:
        if self._alg_step is None:
            raise ALGError("ALGGuidance was asked for a step before set_state(); the pipeline sets it at every step")
        return self._alg_step

    def _with_extra(self, batches: list[BlockState]) -> list[BlockState]:
        """Plan the step from the batches the inner guider made, and append ALG's extra batch where the plan has one.

        The extra batch is the inner guider's unconditional one under the identifier `pred_uncond_alg` (which
        pipelines that name cache contexts after identifiers use as its own context).
        """
        identifiers = [getattr(batch, self._identifier_key) for batch in batches]
        self._alg_step = self._planned(self._current().strength, identifiers)
        if self._alg_step.plan.extra:
            from diffusers.modular_pipelines.modular_pipeline import BlockState

            uncond = batches[identifiers.index(UNCOND)]
            batches = [*batches, BlockState(**{**uncond.as_dict(), self._identifier_key: EXTRA})]
        return batches

    def _low_pass_inputs(self, denoiser: torch.nn.Module, strength: float) -> None:
        """Put a forward pre-hook on `denoiser` that swaps in the condition low-passed at `strength`, for one call."""
        layout = _layout(denoiser, self.adapter_name)
        conditions = self._run.conditions
        signature = _signature(denoiser)

        def swap(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            inputs = named_inputs(signature, args, kwargs)
            return (), layout.put(inputs, conditions(layout.get(inputs), strength))

        self._hook = denoiser.register_forward_pre_hook(swap, with_kwargs=True)


def _inner_guider(inner: Any) -> BaseGuidance:
    from diffusers import guiders

    if inner is None:
        return guiders.ClassifierFreeGuidance()
    if isinstance(inner, ALGGuidance):
        raise ALGError("ALGGuidance wraps a guider that combines predictions, not another ALGGuidance")
    if isinstance(inner, BaseGuidance):
        return inner
    if isinstance(inner, Mapping):
        name = inner.get("_class_name")
        cls = getattr(guiders, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, BaseGuidance)):
            available = sorted(n for n in dir(guiders) if n.endswith("Guidance") and n != "BaseGuidance")
            raise ALGError(
                f"the inner guider's _class_name {name!r} is no diffusers guider; one of: {', '.join(available)}"
            )
        return cls.from_config({key: value for key, value in inner.items() if key != "_class_name"})
    raise ALGError(f"ALGGuidance wraps a diffusers guider (BaseGuidance) or its config, got {type(inner).__name__}")


def _inner_config(inner: BaseGuidance) -> dict[str, Any]:
    """The inner guider's config as `ALGGuidance` stores it: its class name and its init arguments."""
    config = {key: value for key, value in inner.config.items() if not key.startswith("_")}
    return {"_class_name": type(inner).__name__, **config}


def _registry() -> Registry:
    return default_registry()


def _layout(denoiser: torch.nn.Module, name: str | None) -> ConditionLayout:
    """Where the image condition sits in `denoiser`'s inputs, from the named adapter or the first that knows."""
    registry = _registry()
    adapters = [registry.adapter(name)()] if name is not None else [cls() for cls in registry.adapters().values()]
    for adapter in adapters:
        layout = adapter.guider_layout(denoiser)
        if layout is not None:
            return layout
    served = sorted({cls for adapter in adapters for cls in adapter.guider_denoisers})
    by = f"adapter {name!r}" if name is not None else "no adapter"
    raise ALGError(
        f"{by} knows where the image condition sits in the inputs of {type(denoiser).__name__} "
        f"(in_channels {denoiser.config.get('in_channels')}); ALGGuidance serves the denoisers {', '.join(served)}"
    )


def _signature(denoiser: torch.nn.Module) -> inspect.Signature:
    return inspect.signature(denoiser.forward)
