"""One call of an enabled diffusers pipeline: its denoiser calls translated into the engine's roles and branches.

Batched pipelines (one call on `[uncond, cond]`) ask for both roles in one call; sequential ones ask for `cond`,
then `uncond` (told apart by the call's cache-context name, or by their order within a scheduler step). The
engine plans each call ([`Run.plan`][alg_guidance.engine.run.Run.plan]); the branches run in the calls the plan
groups, the primary ones as the pipeline's own call (under its cache context) and an extra branch, when run on
its own, under the context `<name>_alg`, so that caching hooks (FirstBlockCache, MagCache), which keep state per
context, see a constant batch in each.

Under `torch.compile`, dynamo skips the frames that decide and combine (their control flow depends on the step
and the branch, and would make a compiled denoiser recompile at every step) and compiles the denoiser calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ...adapters.base import Adapter, Capture
from ...adapters.layouts import ConditionLayout
from ...config import ALGConfig
from ...engine import Role, Run, StepPlan, merge_inputs, named_inputs, resolve_mode, split_batch
from ...errors import ALGError
from ...registry import Registry
from .calls import output_tensors, with_output_tensors
from .clock import SchedulerClock
from .hook import ALGHook, has_caching_hooks, refuse_incompatible_caches
from .offload import return_to_denoiser


@dataclass
class _Sampling:
    """What a run works out at its first denoiser call, once the pipeline has prepared its inputs and scheduler."""

    record: Run
    clock: SchedulerClock
    layout: ConditionLayout
    uses_cfg: bool | None
    separate: bool
    last_step_index: int | None = None


@dataclass(frozen=True)
class _Evaluation:
    """One denoiser call under ALG: its plan, and the inputs of the denoiser calls that evaluate the plan's branches."""

    plan: StepPlan
    step: int
    groups: tuple[tuple[int, ...], ...]
    calls: tuple[dict[str, Any], ...]
    perturbed: bool = False


class PipelineRun:
    """The ALG state of one call of an enabled pipeline; made when the call starts, dropped when it ends.

    Args:
        pipeline: The pipeline being called.
        adapter: Its adapter.
        config: Its ALG configuration.
        registry: The registry its plugins came from.

    Attributes:
        pipeline: The pipeline.
        denoisers: The modules this run guides.
        arguments: The pipeline call's arguments by name, defaults applied (set when the call starts).
        captures: The calls of the adapter's `captures` method recorded in this run.
    """

    def __init__(self, pipeline: Any, adapter: Adapter, config: ALGConfig, registry: Registry | None) -> None:
        self.pipeline = pipeline
        self.adapter = adapter
        self.config = config
        self.registry = registry
        self.denoisers = tuple(adapter.denoisers(pipeline))
        self.arguments: dict[str, Any] = {}
        self.captures: dict[str, Capture] = {}
        self._sampling: _Sampling | None = None

    def guides(self, module: torch.nn.Module) -> bool:
        """Whether `module` is one of the denoisers this run guides."""
        return any(module is denoiser for denoiser in self.denoisers)

    @torch.compiler.disable(recursive=False)
    def __call__(self, hook: ALGHook, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        """Handle one denoiser call of this run: pass it through at strength 0, else run the plan's branches."""
        evaluation = self._plan(hook, module, args, kwargs)
        if evaluation is None:
            return hook.original(*args, **kwargs)
        outputs = []
        for number, inputs in enumerate(evaluation.calls):
            outputs.append(hook.original(**inputs) if number == 0 else self._extra(hook, module, inputs))
        return self._settle(evaluation, outputs)

    @torch.compiler.disable
    def _plan(self, hook: ALGHook, module: torch.nn.Module, args: tuple, kwargs: dict) -> _Evaluation | None:
        """The plan of this call and the inputs of its denoiser calls; `None` when it passes through."""
        sampling = self._sampling or self._start()
        perturbed = self._perturbed(hook)
        roles = ("cond",) if perturbed else self._roles(hook, sampling)
        state = sampling.clock.state(starts_step=roles != ("uncond",) and not perturbed)
        plan = sampling.record.plan(state, roles, uncond_sees_image=self.adapter.uncond_sees_image)
        if plan.passes_through:
            return None
        inputs = named_inputs(hook.signature, args, kwargs)
        layout, names, count = sampling.layout, self.adapter.batched_inputs, len(plan.roles)
        batch = int(layout.get(inputs).shape[0])
        low_passed = layout.put(inputs, self._low_passed(inputs, module, plan.strength, sampling))
        by_role = {
            False: dict(zip(plan.roles, split_batch(inputs, count, batch, names), strict=True)),
            True: dict(zip(plan.roles, split_batch(low_passed, count, batch, names), strict=True)),
        }
        branches = [by_role[branch.low_passed][branch.role] for branch in plan.branches]
        groups = plan.calls(not sampling.separate)
        calls = tuple(
            branches[group[0]] if len(group) == 1 else merge_inputs([branches[i] for i in group], batch // count, names)
            for group in groups
        )
        return _Evaluation(plan, state.step, groups, calls, perturbed)

    @torch.compiler.disable
    def _settle(self, evaluation: _Evaluation, outputs: list[Any]) -> Any:
        """The output to hand the pipeline: the predictions of its roles, in its own call's output container."""
        count = self.adapter.predictions
        settled = []
        for number in range(count):
            branch_outputs: list[torch.Tensor] = [None] * len(evaluation.plan.branches)  # type: ignore[list-item]
            for group, output in zip(evaluation.groups, outputs, strict=True):
                for index, piece in zip(group, output_tensors(output, count)[number].chunk(len(group)), strict=True):
                    branch_outputs[index] = piece
            predictions = self._predictions(evaluation, number, branch_outputs)
            settled.append(predictions[0] if len(predictions) == 1 else torch.cat(predictions))
        return with_output_tensors(outputs[0], tuple(settled))

    def _predictions(
        self, evaluation: _Evaluation, number: int, branch_outputs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """The predictions of prediction `number` of the denoiser's output, for the call's roles."""
        plan, record = evaluation.plan, self._sampling.record
        if evaluation.perturbed:
            return (record.settle_perturbed(evaluation.step, plan, branch_outputs, prediction=number),)
        uncond_side = self.adapter.shift_target == "uncond" and plan.roles == ("uncond",) and plan.extra
        scale = self.adapter.guidance_scale(self.pipeline, self.arguments) if uncond_side else None
        return record.settle(evaluation.step, plan, branch_outputs, scale, prediction=number)

    def _start(self) -> _Sampling:
        """Set up at the first denoiser call, once the pipeline has prepared its inputs and scheduler."""
        adapter, pipeline = self.adapter, self.pipeline
        uses_cfg = adapter.uses_cfg(pipeline)
        mode = resolve_mode(self.config.mode, True if uses_cfg is None else uses_cfg)
        record = Run(
            self.config,
            mode,
            self.registry,
            shift_target=adapter.shift_target,
            float32_predictions=adapter.float32_predictions,
            perturbed_calls=bool(adapter.perturbed_contexts),
        )
        clock = SchedulerClock(
            pipeline.scheduler,
            self.config.schedule.uses_noise_level,
            num_steps=adapter.num_steps(pipeline),
            counts_steps=not adapter.steps_scheduler,
        )
        if any(record.conditions.strength(state) > 0.0 for state in clock.states()):
            refuse_incompatible_caches(self.denoisers)  # harmless when the schedule never filters
        self._sampling = _Sampling(
            record=record,
            clock=clock,
            layout=adapter.layout(pipeline, self.captures),
            uses_cfg=uses_cfg,
            separate=not (self.config.batch_branches and adapter.batches_branches) or has_caching_hooks(self.denoisers),
        )
        return self._sampling

    def _perturbed(self, hook: ALGHook) -> bool:
        """Whether the call is one of the adapter's perturbed-guidance calls on the cond batch alone."""
        if not self.adapter.perturbed_contexts:
            return False
        context = hook.context()
        return context is not None and context.name in self.adapter.perturbed_contexts

    def _roles(self, hook: ALGHook, sampling: _Sampling) -> tuple[Role, ...]:
        """The roles a denoiser call asks for: both for a batched CFG call, else the cond or the uncond one."""
        if self.adapter.guidance == "batched":
            return ("uncond", "cond") if sampling.uses_cfg else ("cond",)
        context = hook.context()
        names = self.adapter.contexts
        if names and context is not None and context.name in names:
            return ("cond",) if context.name == names[0] else ("uncond",)
        index = sampling.clock.step_index()
        if index is None:
            raise ALGError(
                f"cannot tell the cond and uncond calls of {type(self.pipeline).__name__} apart: "
                "it sets no cache context and its scheduler keeps no step index"
            )
        role: Role = "uncond" if index == sampling.last_step_index else "cond"
        sampling.last_step_index = index
        return (role,)

    @staticmethod
    @torch.compiler.disable(recursive=False)
    def _extra(hook: ALGHook, module: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        """Run an extra branch on its own; under its own cache context when the pipeline set one."""
        context = hook.context()
        if context is None:
            return hook.original(**inputs)
        with module.cache_context(**{**asdict(context), "name": f"{context.name}_alg"}):
            return hook.original(**inputs)

    def _low_passed(
        self, inputs: dict[str, Any], module: torch.nn.Module, strength: float, sampling: _Sampling
    ) -> torch.Tensor:
        """The call's condition low-passed at `strength` (in latent space, or rebuilt from the filtered image)."""
        condition = sampling.layout.get(inputs)
        conditions = sampling.record.conditions
        if self.config.space == "pixel":
            latent = conditions.encoded(strength, lambda low_pass: self._encode(module, low_pass))
            return latent.repeat(condition.shape[0] // latent.shape[0], *[1] * (latent.ndim - 1))
        prepared = self.adapter.prepared_condition(self.pipeline, self.captures)
        if prepared is not None and prepared.shape == condition.shape:
            return conditions(prepared, strength)  # filtered at the pipeline's precision, cast once by the layout
        return conditions(condition, strength)

    def _encode(self, denoiser: torch.nn.Module, low_pass: Any) -> torch.Tensor:
        latent = self.adapter.encode_pixels(self.pipeline, self.captures, low_pass)
        return_to_denoiser(self.pipeline, denoiser)  # the VAE ran mid-call: undo what its offload hook did
        return latent
