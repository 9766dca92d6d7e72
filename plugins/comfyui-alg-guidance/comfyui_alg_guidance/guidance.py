"""ALG inside ComfyUI's sampling: a `sampler_calc_cond_batch_function` that evaluates the branches the engine plans.

Every ComfyUI sampler (KSampler, SamplerCustom, SamplerCustomAdvanced, with any scheduler or sigma list) predicts
through `comfy.samplers.sampling_function`, which hands the model option `sampler_calc_cond_batch_function` the
conditioning of both branches at once: `[cond, uncond]`, `uncond` being `None` when ComfyUI skips it at CFG 1.
[`ALGCondBatch`][comfyui_alg_guidance.guidance.ALGCondBatch] asks the engine what to evaluate for those roles at
the sigma of the call, evaluates the branches through ComfyUI's own `calc_cond_batch` (its batching by free memory,
area and mask conditioning, hooks and ControlNets all apply), and hands back the predictions that make ComfyUI's
own CFG combination (or any `sampler_cfg_function`) produce ALG.

The run record of a sampling run lives in that run's model options, which ComfyUI makes for each run and drops
after it: nothing of a run outlives it, and two models (Wan 2.2's experts) each keep their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from alg_guidance import ALGConfig, Registry
from alg_guidance.engine import Role, Run, SigmaProgress, resolve_mode
from alg_guidance.schedules import noise_level_from_sigma

from .families import ComfyFamily

RUN_KEY = "alg_guidance_run"
"""The key of the run record in a sampling run's model options."""


class _Sampling:
    """One sampling run: its run record, and the progress of its sigmas."""

    def __init__(self, record: Run, progress: SigmaProgress) -> None:
        self.record = record
        self.progress = progress


class ALGCondBatch:
    """ComfyUI's `sampler_calc_cond_batch_function` for one patched model.

    Args:
        config: The ALG configuration.
        family: Where the model keeps its image condition.
        flow_sigmas: Whether the model's sigma is the flow-matching time itself (ComfyUI's convention for
            flow-matching models), so that it is the noise level; else the noise level is `sigma / (1 + sigma)`.
        inner: The function this one wraps (one an earlier patch installed), or `None` for ComfyUI's
            `calc_cond_batch`.
        registry: The registry the config's plugins came from.
    """

    def __init__(
        self,
        config: ALGConfig,
        family: ComfyFamily,
        flow_sigmas: bool,
        inner: Callable[[dict], list] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config
        self.family = family
        self.flow_sigmas = flow_sigmas
        self.inner = inner
        self.registry = registry

    def __call__(self, args: dict[str, Any]) -> list[torch.Tensor]:
        """The outputs for `args["conds"]` (`[cond, uncond]`) at `args["sigma"]`, ALG's where its strength is > 0."""
        cond, uncond = args["conds"]
        if cond is None:
            return self._evaluate(args, args["conds"], args["input"])
        roles: tuple[Role, ...] = ("cond",) if uncond is None else ("cond", "uncond")
        sampling = self._sampling(args, uses_cfg=uncond is not None)
        sigma = float(args["sigma"].detach().reshape(-1).max())
        plan = sampling.record.plan(sampling.progress.state(sigma), roles)
        if plan.passes_through:
            return self._evaluate(args, args["conds"], args["input"])
        conditions = sampling.record.conditions

        def low_pass(tensor: torch.Tensor, key: Any) -> torch.Tensor:
            return conditions(tensor, plan.strength, key=key)

        condition = self.family.condition
        by_role = {"cond": cond, "uncond": uncond}
        low_passed_entries = {role: condition.low_passed_entries(by_role[role], low_pass) for role in roles}
        latents = {False: args["input"], True: condition.low_passed_input(args["input"], cond, low_pass)}
        if latents[True] is latents[False] and all(low_passed_entries[role] is by_role[role] for role in roles):
            # No image condition in this conditioning (text-to-video, or an image kept at strength below 1).
            return self._evaluate(args, args["conds"], args["input"])
        outputs: list[torch.Tensor] = [None] * len(plan.branches)  # type: ignore[list-item]
        for group in plan.calls(self.config.batch_branches):
            # One call for the group, unless its branches see different latents (a condition inside the latent).
            same_latent = latents[True] is latents[False]
            for low_passed in (None,) if same_latent else (False, True):
                indices = [i for i in group if low_passed is None or plan.branches[i].low_passed == low_passed]
                if not indices:
                    continue
                lists = [
                    (low_passed_entries if branch.low_passed else by_role)[branch.role]
                    for branch in (plan.branches[i] for i in indices)
                ]
                results = self._evaluate(args, lists, latents[bool(low_passed)])
                for index, result in zip(indices, results, strict=True):
                    outputs[index] = result
        predictions = dict(zip(roles, plan.combine(outputs), strict=True))
        return [predictions["cond"], predictions.get("uncond", torch.zeros_like(predictions["cond"]))]

    def _sampling(self, args: dict[str, Any], uses_cfg: bool) -> _Sampling:
        """The run record of this sampling run, made at its first call and kept in its model options."""
        options = args["model_options"]
        sampling = options.get(RUN_KEY)
        if sampling is None:
            sigmas = options.get("transformer_options", {}).get("sample_sigmas")
            if sigmas is None:
                raise RuntimeError(
                    "ALG reads the sampler's sigma list from transformer_options['sample_sigmas'], which this "
                    "sampler did not set; sample with ComfyUI's KSampler, SamplerCustom or SamplerCustomAdvanced"
                )
            noise_level = float if self.flow_sigmas else noise_level_from_sigma
            mode = resolve_mode(self.config.mode, uses_cfg)
            sampling = _Sampling(Run(self.config, mode, self.registry), SigmaProgress(sigmas, noise_level))
            options[RUN_KEY] = sampling
        return sampling

    def _evaluate(self, args: dict[str, Any], conds: list, x: torch.Tensor) -> list[torch.Tensor]:
        """The model's outputs for `conds` at `x`: through the wrapped function, or ComfyUI's `calc_cond_batch`."""
        if self.inner is not None:
            return self.inner({**args, "conds": conds, "input": x})
        import comfy.samplers

        return comfy.samplers.calc_cond_batch(args["model"], conds, x, args["sigma"], args["model_options"])
