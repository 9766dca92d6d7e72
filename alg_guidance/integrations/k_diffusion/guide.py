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
[`SigmaProgress`][alg_guidance.integrations.k_diffusion.progress.SigmaProgress], so samplers that evaluate the
denoiser twice per step or at adaptive sigmas see the schedule at the noise level they actually evaluate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ...adapters.layouts import ConditionLayout
from ...config import ALGConfig, resolve_config
from ...errors import ALGError
from ...guidance import GuidanceScale, LowPass, alg_prediction, resolve_mode
from ...registry import Registry
from ...schedules import StepState
from .branches import merge_branches, resolve_layout
from .progress import SigmaProgress

Denoiser = Callable[..., torch.Tensor]
"""A k-diffusion denoiser, called as `denoiser(x, sigma, **inputs)`; it returns the clean estimate of `x`."""


class GuidedDenoiser:
    """A k-diffusion denoiser sampling with ALG, made by [`guide`][alg_guidance.integrations.k_diffusion.guide.guide].

    Call it as `guided(x, sigma, **extra_args)`, as every k-diffusion sampler does; `extra_args` (the samplers'
    `extra_args`) reach every branch alongside `image_cond`.

    Attributes:
        denoiser: The wrapped denoiser.
        config: The ALG configuration.
        layout: Where the image condition sits among the inputs.
        uses_cfg: Whether it runs classifier-free guidance.
        mode: `"alg"` (three branches while filtering) or `"replace"` (every branch sees the filtered condition).
        low_pass: The filtered condition of the current strength, computed once per strength in a row.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        config: ALGConfig,
        *,
        image_cond: Mapping[str, Any],
        cond: Mapping[str, Any],
        uncond: Mapping[str, Any] | None = None,
        cfg_scale: GuidanceScale = 1.0,
        layout: ConditionLayout | str | None = None,
        sigmas: torch.Tensor | Sequence[float] | None = None,
    ) -> None:
        if config.space == "pixel":
            raise ALGError(
                "k-diffusion guidance filters the latent image condition; space='pixel' needs a pipeline's VAE "
                "(use alg.enable on the diffusers pipeline, or space='latent')"
            )
        self.image_cond = _inputs("image_cond", image_cond)
        self.cond = _inputs("cond", cond)
        self.uncond = None if uncond is None else _inputs("uncond", uncond)
        for name, branch in (("cond", self.cond), ("uncond", self.uncond or {})):
            shared = sorted(branch.keys() & self.image_cond.keys())
            if shared:
                raise ALGError(f"{name} and image_cond both give {', '.join(shared)}; give each input once")
        if self.uncond is not None and self.uncond.keys() != self.cond.keys():
            raise ALGError(
                f"cond and uncond must give the same inputs, got {sorted(self.cond)} and {sorted(self.uncond)}"
            )
        scale_is_one = not isinstance(cfg_scale, torch.Tensor) and cfg_scale == 1
        if self.uncond is None and not scale_is_one:
            raise ALGError(f"cfg_scale={cfg_scale} needs the unconditional inputs: pass uncond=...")
        self.denoiser = denoiser
        self.config = config
        self.cfg_scale = cfg_scale
        self.layout = resolve_layout(layout, self.image_cond)
        self.uses_cfg = self.uncond is not None and not scale_is_one
        self.mode = resolve_mode(config.mode, self.uses_cfg)
        self.low_pass = LowPass(config)
        self._filtered_strength: float | None = None
        self.sigmas = sigmas

    @property
    def sigmas(self) -> torch.Tensor | Sequence[float] | None:
        """The sampler's sigma schedule, which defines the progress of every sigma; set it before sampling."""
        return self._sigmas

    @sigmas.setter
    def sigmas(self, sigmas: torch.Tensor | Sequence[float] | None) -> None:
        self._progress = None if sigmas is None else SigmaProgress(sigmas)
        self._sigmas = sigmas

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
        return self.low_pass.strength(self.state(sigma))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        """The guided clean estimate of `x` at `sigma`."""
        strength = self.strength(sigma)
        clash = extra_args.keys() & (self.image_cond.keys() | self.cond.keys())
        if clash:
            raise ALGError(f"the sampler's extra_args give {', '.join(sorted(clash))}, which the guide already holds")
        shared = {**self.image_cond, **extra_args}
        filtered = self._filtered(shared, strength)
        if not self.uses_cfg:
            return self.denoiser(x, sigma, **filtered, **self.cond)
        if strength == 0.0 or self.mode == "replace":
            uncond, cond = self._evaluate(x, sigma, [{**filtered, **self.uncond}, {**filtered, **self.cond}])
            return alg_prediction(uncond, cond, uncond, self.cfg_scale)
        u_orig, u_lp, c_lp = self._evaluate(
            x, sigma, [{**shared, **self.uncond}, {**filtered, **self.uncond}, {**filtered, **self.cond}]
        )
        return alg_prediction(u_orig, c_lp, u_lp, self.cfg_scale)

    def _filtered(self, shared: dict[str, Any], strength: float) -> dict[str, Any]:
        """`shared` with the condition low-passed; one strength's condition is kept, for the calls that follow."""
        if strength == 0.0:
            return shared
        if strength != self._filtered_strength:
            self.low_pass.reset()
            self._filtered_strength = strength
        return self.layout.put(shared, self.low_pass(self.layout.get(shared), strength))

    def _evaluate(self, x: torch.Tensor, sigma: torch.Tensor, branches: list[dict[str, Any]]) -> list[torch.Tensor]:
        """The denoiser's output for each branch: one call on their batch, or one call each."""
        if not self.config.batch_branches:
            return [self.denoiser(x, sigma, **inputs) for inputs in branches]
        count, batch = len(branches), x.shape[0]
        inputs = merge_branches(branches, batch)
        sigmas = sigma.reshape(-1).expand(batch).repeat(count)
        return list(self.denoiser(torch.cat([x] * count), sigmas, **inputs).chunk(count))

    def __repr__(self) -> str:
        return (
            f"GuidedDenoiser({type(self.denoiser).__name__}, mode={self.mode!r}, cfg={self.uses_cfg}, "
            f"filter={self.config.filter!r}, schedule={self.config.schedule!r})"
        )


def _inputs(name: str, inputs: Any) -> dict[str, Any]:
    if not isinstance(inputs, Mapping):
        raise ALGError(f"{name} must be a mapping of the denoiser's keyword inputs, got {type(inputs).__name__}")
    return dict(inputs)


def guide(
    denoiser: Denoiser,
    config: Any,
    *,
    image_cond: Mapping[str, Any],
    cond: Mapping[str, Any],
    uncond: Mapping[str, Any] | None = None,
    cfg_scale: GuidanceScale = 1.0,
    layout: ConditionLayout | str | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    registry: Registry | None = None,
) -> GuidedDenoiser:
    """Wrap a k-diffusion denoiser so that any k-diffusion sampler samples with ALG.

    Every branch calls `denoiser(x, sigma, **image_cond, **cond_or_uncond, **extra_args)`. With
    `batch_branches` (the default) the branches of one evaluation run as one batch: every tensor input whose
    first dimension is the batch size is concatenated, every other input must be shared by all branches.

    Args:
        denoiser: A k-diffusion denoiser `denoiser(x, sigma, **inputs) -> clean estimate`, such as the
            [parameterization wrappers][alg_guidance.integrations.k_diffusion.parameterizations] of diffusers models.
        config: An `ALGConfig`, a mapping, a preset name or a YAML/JSON path (latent space only).
        image_cond: Keyword inputs every branch shares, among them the image condition ALG low-passes (image
            embeddings and the like stay unfiltered).
        cond: Keyword inputs of the conditional branch (the prompt).
        uncond: Keyword inputs of the unconditional branch (the negative prompt); `None` without CFG.
        cfg_scale: The CFG scale `w`, a float or a tensor broadcastable to the denoiser's output (per-frame
            scales); at 1 (or without `uncond`) ALG runs in replace mode, one branch.
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
    )
