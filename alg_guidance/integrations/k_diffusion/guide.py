r"""ALG as a guided k-diffusion denoiser, for every sampler in `k_diffusion.sampling`.

[`guide`][alg_guidance.integrations.k_diffusion.guide.guide] wraps a k-diffusion denoiser `D(x, sigma, **inputs)`
(which returns the clean estimate) and its conditioning into one callable `guided(x, sigma, **extra_args)`. With
classifier-free guidance at scale \(w\) and the filter strength \(s\) of the schedule at this sigma, it returns

\[ D(x, I, \varnothing) + w \,\big(D(x, \mathrm{LP}_s(I), c) - D(x, \mathrm{LP}_s(I), \varnothing)\big) \]

while \(s > 0\) (three branches, in one batch or one call each) and plain CFG \(D(x, I, \varnothing) + w
(D(x, I, c) - D(x, I, \varnothing))\) once \(s = 0\) (two branches). Without CFG ("replace" mode) it returns
\(D(x, \mathrm{LP}_s(I), c)\), one call. The combination is linear in the denoiser's outputs, so it is the same
whether the model predicts noise, velocity or v: the parameterization wrappers convert affinely.

The strength comes from the sigma of each call through
[`SigmaProgress`][alg_guidance.engine.progress.SigmaProgress], so samplers that evaluate the
denoiser twice per step or at adaptive sigmas see the schedule at the noise level they actually evaluate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ...adapters.layouts import ConditionLayout
from ...config import ALGConfig, resolve_config
from ...engine import GuidanceScale, Role, Run, merge_inputs, resolve_mode
from ...engine.progress import SigmaProgress
from ...errors import ALGError
from ...registry import Registry
from ...schedules import StepState
from .conditioning import resolve_layout

Denoiser = Callable[..., torch.Tensor]
"""A k-diffusion denoiser, called as `denoiser(x, sigma, **inputs)`; it returns the clean estimate of `x`."""

CALL_TIME_ARGS = ("cond", "uncond", "cond_scale")
"""The `extra_args` the guided denoiser takes at call time, as k-diffusion's `CFGDenoiser` does."""


class GuidedDenoiser(torch.nn.Module):
    """A k-diffusion denoiser sampling with ALG, made by [`guide`][alg_guidance.integrations.k_diffusion.guide.guide].

    Call it as `guided(x, sigma, **extra_args)`, as every k-diffusion sampler does. Like k-diffusion's
    `CFGDenoiser`, it takes `cond`, `uncond` and `cond_scale` from `extra_args` when they were not bound at
    construction (a mapping of keyword inputs, or one tensor passed as the keyword `cond`); every other entry of
    `extra_args` reaches every branch alongside `image_cond`.

    Attributes:
        inner_model: The wrapped denoiser.
        config: The ALG configuration.
        layout: Where the image condition sits among the inputs.
        run: The run record: the low-passed conditions of the current sigma schedule (reset when `sigmas` is set).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        config: ALGConfig,
        *,
        image_cond: Mapping[str, Any],
        cond: Mapping[str, Any] | None = None,
        uncond: Mapping[str, Any] | None = None,
        cfg_scale: GuidanceScale | None = None,
        layout: ConditionLayout | str | None = None,
        sigmas: torch.Tensor | Sequence[float] | None = None,
        registry: Registry | None = None,
    ) -> None:
        super().__init__()
        if config.space == "pixel":
            raise ALGError(
                "k-diffusion guidance filters the latent image condition; space='pixel' needs a pipeline's VAE "
                "(use alg.enable on the diffusers pipeline, or space='latent')"
            )
        self.inner_model = denoiser
        self.config = config
        self.registry = registry
        self.image_cond = _inputs("image_cond", image_cond)
        self.cond = None if cond is None else _inputs("cond", cond)
        self.uncond = None if uncond is None else _inputs("uncond", uncond)
        self.cfg_scale = cfg_scale
        self.layout = resolve_layout(layout, self.image_cond)
        if self.cond is not None:
            self._bind(self.cond, self.uncond, 1.0 if cfg_scale is None else cfg_scale)  # fail at construction
        self.sigmas = sigmas

    @property
    def sigmas(self) -> torch.Tensor | Sequence[float] | None:
        """The sampler's sigma schedule, which defines the progress of every sigma; set it before sampling."""
        return self._sigmas

    @sigmas.setter
    def sigmas(self, sigmas: torch.Tensor | Sequence[float] | None) -> None:
        self._progress = None if sigmas is None else SigmaProgress(sigmas)
        self._sigmas = sigmas
        self.run = Run(self.config, "alg", self.registry)

    @property
    def uses_cfg(self) -> bool:
        """Whether the bound conditioning runs classifier-free guidance (`uncond` given, scale not 1)."""
        return self._bind(self.cond, self.uncond, 1.0 if self.cfg_scale is None else self.cfg_scale)

    @property
    def mode(self) -> str:
        """The branch rule for the bound conditioning: `"alg"` (three branches) or `"replace"`."""
        return resolve_mode(self.config.mode, self.uses_cfg)

    def state(self, sigma: torch.Tensor) -> StepState:
        """The step state of a call at `sigma` (one value for the whole batch).

        Raises:
            ALGError: No sigma schedule was given, or the batch's sigmas differ.
        """
        if self._progress is None:
            raise ALGError(
                "ALG needs the sampler's sigma schedule to know the progress of each sigma: pass sigmas=... to "
                "guide(), or set guided.sigmas (for dpm_fast/dpm_adaptive, any schedule from sigma_max to sigma_min)"
            )
        values = sigma.detach().reshape(-1)
        low, high = torch.stack(torch.aminmax(values)).tolist() if values.numel() > 1 else [values.item()] * 2
        if low != high:
            raise ALGError(f"every sample of a batch must share one sigma under ALG, got sigmas from {low} to {high}")
        return self._progress.state(high)

    def strength(self, sigma: torch.Tensor) -> float:
        """The filter strength the schedule gives at `sigma`."""
        return self.run.conditions.strength(self.state(sigma))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        """The guided clean estimate of `x` at `sigma`."""
        call_time = {name: extra_args.pop(name) for name in CALL_TIME_ARGS if name in extra_args}
        bound = [name for name in call_time if getattr(self, _ATTRIBUTES[name]) is not None]
        if bound:
            raise ALGError(f"extra_args give {', '.join(bound)}, which guide() already bound; give each once")
        cond = self.cond if self.cond is not None else _call_inputs("cond", call_time.get("cond"))
        uncond = self.uncond if self.uncond is not None else _call_inputs("uncond", call_time.get("uncond"))
        scale = self.cfg_scale if self.cfg_scale is not None else call_time.get("cond_scale", 1.0)
        uses_cfg = self._bind(cond, uncond, scale)
        clash = extra_args.keys() & (self.image_cond.keys() | cond.keys())
        if clash:
            raise ALGError(f"the sampler's extra_args give {', '.join(sorted(clash))}, which the guide already holds")
        roles: tuple[Role, ...] = ("uncond", "cond") if uses_cfg else ("cond",)
        self.run.mode = resolve_mode(self.config.mode, uses_cfg)
        plan = self.run.plan(self.state(sigma), roles)
        shared = {**self.image_cond, **extra_args}
        filtered = self._filtered(shared, plan.strength)
        texts = {"cond": cond, "uncond": uncond}
        branches = [{**(filtered if branch.low_passed else shared), **texts[branch.role]} for branch in plan.branches]
        outputs: list[torch.Tensor] = [None] * len(branches)  # type: ignore[list-item]
        for call in plan.calls(self.config.batch_branches):
            for index, output in zip(call, self._evaluate(x, sigma, [branches[i] for i in call]), strict=True):
                outputs[index] = output
        predictions = plan.combine(outputs)
        if not uses_cfg:
            return predictions[0]
        u, c = predictions
        return (u + scale * (c - u)).to(u.dtype)  # in float32 while ALG's shift is in c

    def _bind(self, cond: Mapping[str, Any] | None, uncond: Mapping[str, Any] | None, scale: GuidanceScale) -> bool:
        """Check a call's conditioning; whether it runs classifier-free guidance."""
        if cond is None:
            raise ALGError("the guided denoiser needs the conditional inputs: pass cond= to guide() or in extra_args")
        for name, branch in (("cond", cond), ("uncond", uncond or {})):
            shared = sorted(branch.keys() & self.image_cond.keys())
            if shared:
                raise ALGError(f"{name} and image_cond both give {', '.join(shared)}; give each input once")
        if uncond is not None and uncond.keys() != cond.keys():
            raise ALGError(f"cond and uncond must give the same inputs, got {sorted(cond)} and {sorted(uncond)}")
        scale_is_one = not isinstance(scale, torch.Tensor) and scale == 1
        if uncond is None and not scale_is_one:
            raise ALGError(f"cfg_scale={scale} needs the unconditional inputs: pass uncond=...")
        uses_cfg = uncond is not None and not scale_is_one
        resolve_mode(self.config.mode, uses_cfg)
        return uses_cfg

    def _filtered(self, shared: dict[str, Any], strength: float) -> dict[str, Any]:
        """`shared` with the condition low-passed at `strength` (the run keeps it while the strength lasts)."""
        if strength == 0.0:
            return shared
        return self.layout.put(shared, self.run.conditions(self.layout.get(shared), strength))

    def _evaluate(self, x: torch.Tensor, sigma: torch.Tensor, branches: list[dict[str, Any]]) -> list[torch.Tensor]:
        """The denoiser's output for each branch of one call: one batch of all of them."""
        if len(branches) == 1:
            return [self.inner_model(x, sigma, **branches[0])]
        count, batch = len(branches), x.shape[0]
        inputs = merge_inputs(branches, batch)
        sigmas = sigma.reshape(-1).expand(batch).repeat(count)
        return list(self.inner_model(torch.cat([x] * count), sigmas, **inputs).chunk(count))

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module's hook for repr()
        return f"filter={self.config.filter!r}, schedule={self.config.schedule!r}"


_ATTRIBUTES = {"cond": "cond", "uncond": "uncond", "cond_scale": "cfg_scale"}


def _inputs(name: str, inputs: Any) -> dict[str, Any]:
    if not isinstance(inputs, Mapping):
        raise ALGError(f"{name} must be a mapping of the denoiser's keyword inputs, got {type(inputs).__name__}")
    return dict(inputs)


def _call_inputs(name: str, inputs: Any) -> dict[str, Any] | None:
    """Call-time conditioning: a mapping of keyword inputs, or one tensor passed as the keyword `cond`."""
    if inputs is None or isinstance(inputs, Mapping):
        return None if inputs is None else dict(inputs)
    if isinstance(inputs, torch.Tensor):
        return {"cond": inputs}
    raise ALGError(f"extra_args[{name!r}] must be a mapping of keyword inputs or a tensor, got {type(inputs).__name__}")


def guide(
    denoiser: Denoiser,
    config: Any,
    *,
    image_cond: Mapping[str, Any],
    cond: Mapping[str, Any] | None = None,
    uncond: Mapping[str, Any] | None = None,
    cfg_scale: GuidanceScale | None = None,
    layout: ConditionLayout | str | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    registry: Registry | None = None,
) -> GuidedDenoiser:
    """Wrap a k-diffusion denoiser so that any k-diffusion sampler samples with ALG.

    Every branch calls `denoiser(x, sigma, **image_cond, **cond_or_uncond, **extra_args)`. With
    `batch_branches` (the default) the branches of one evaluation run as one batch (inputs merged by
    [`merge_inputs`][alg_guidance.engine.batching.merge_inputs]: tensors whose first dimension is the batch size
    are concatenated, those of batch 1 broadcast, every other input must be shared by all branches); without it,
    the unconditional and conditional branches run as one batch, as with plain CFG, and ALG's extra branch as a
    call of its own.

    Args:
        denoiser: A k-diffusion denoiser `denoiser(x, sigma, **inputs) -> clean estimate`, such as the
            [parameterization wrappers][alg_guidance.integrations.k_diffusion.parameterizations] of diffusers models.
        config: An `ALGConfig`, a mapping, a preset name or a YAML/JSON path (latent space only).
        image_cond: Keyword inputs every branch shares, among them the image condition ALG low-passes (image
            embeddings and the like stay unfiltered).
        cond: Keyword inputs of the conditional branch (the prompt); `None` to take them from the sampler's
            `extra_args["cond"]` at every call, as k-diffusion's `CFGDenoiser` does.
        uncond: Keyword inputs of the unconditional branch (the negative prompt); `None` without CFG, or to take
            them from `extra_args["uncond"]`.
        cfg_scale: The CFG scale `w`, a float or a tensor broadcastable to the denoiser's output (per-frame
            scales); at 1 (or without `uncond`) ALG runs in replace mode, one branch. `None`: from
            `extra_args["cond_scale"]`, else 1.
        layout: Where the image condition sits among `image_cond`: a keyword, a
            [`ConditionLayout`][alg_guidance.adapters.layouts.ConditionLayout], or `None` when `image_cond` holds
            one tensor.
        sigmas: The sampler's sigma schedule, which gives every sigma its progress; may be set later as
            `guided.sigmas`.
        registry: Where to look up filter and schedule kinds (the default registry if `None`).

    Raises:
        ALGError: The inputs contradict each other, the layout finds no condition, the schedule is not a decreasing
            sigma schedule, `config.mode` is `"alg"` without CFG, or `config.space` is `"pixel"`.

    Examples:
        ```python
        sampling = alg.k_diffusion.load_sampling()
        sigmas = sampling.get_sigmas_karras(30, 0.03, 200.0)
        guided = alg.k_diffusion.guide(
            denoiser, "wan2.1", image_cond={"condition": image_latent}, cond={"context": text},
            uncond={"context": negative}, cfg_scale=5.0, sigmas=sigmas,
        )
        x = sampling.sample_dpmpp_2m(guided, noise * sigmas[0], sigmas)
        ```
    """
    return GuidedDenoiser(
        denoiser,
        resolve_config(config, registry=registry),
        image_cond=image_cond,
        cond=cond,
        uncond=uncond,
        cfg_scale=cfg_scale,
        layout=layout,
        sigmas=sigmas,
        registry=registry,
    )
