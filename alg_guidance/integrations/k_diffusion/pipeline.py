"""k-diffusion sampling of a diffusers image-to-video pipeline's own model, with or without ALG.

[`from_pipeline`][alg_guidance.integrations.k_diffusion.pipeline.from_pipeline] runs the pipeline up to its first
scheduler step, recording what it hands its transformer (the pipeline's own prompt and image encoding, VAE
latents, normalization and positional inputs) without running the transformer, and returns a
[`PipelineSetup`][alg_guidance.integrations.k_diffusion.pipeline.PipelineSetup]: a k-diffusion denoiser around
the transformer, the conditioning split into image, conditional and unconditional inputs, the pipeline's own
initial noise and sigma schedule, and the decoding back to frames.

What differs between model families comes from the pipeline's [adapter][alg_guidance.adapters.base.Adapter], the
same one `alg.enable` uses: where the condition sits (its layout), how the CFG branches are laid out
(`guidance`, `batched_inputs`), the run's CFG scale, how latents decode, and why a family cannot be sampled
this way (`k_diffusion_refusal`). Served: the families whose condition is concatenated to the latents along the
channels (Wan 2.1 and SkyReels-V2, CogVideoX 1.0 and 1.5, HunyuanVideo-I2V-33ch, SkyReels-V1-Hunyuan,
HunyuanVideo 1.5).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ...adapters.base import Adapter
from ...adapters.layouts import ChannelSlice
from ...adapters.lookup import find_adapter
from ...adapters.schedulers import is_flow_matching
from ...engine import named_inputs, split_batch
from ...errors import ALGError
from ...registry import Registry
from .guide import GuidedDenoiser, guide
from .parameterizations import DiscreteEpsDenoiser, DiscreteVDenoiser, FlowMatchingDenoiser

CONDITION = "condition"
"""The keyword under which the pipeline denoisers take the image condition: every channel after the latents."""


class TransformerModel:
    """A diffusers transformer called as `model(x_in, timestep, *, condition, **inputs)`, as the wrappers call it.

    It builds the transformer's input the way the pipeline does: the condition channels (the image latent, and a
    mask where the model takes one) concatenated after the latent channels; the inputs every call shares (rotary
    embeddings, `ofs`, attention kwargs) are added; the prediction comes back in the dtype of `x_in`.

    Args:
        transformer: The pipeline's transformer.
        layout: The adapter's layout of the condition: channels from the end of the latent channels on.
        fixed: The inputs shared by every call.
        dtype: The dtype the pipeline feeds the transformer.
    """

    def __init__(self, transformer: torch.nn.Module, layout: ChannelSlice, fixed: dict[str, Any], dtype: torch.dtype):
        self.transformer = transformer
        self.layout = layout
        self.fixed = fixed
        self.dtype = dtype

    def __call__(self, x_in: torch.Tensor, timestep: torch.Tensor, *, condition: torch.Tensor, **inputs: Any):
        """The transformer's prediction for the latent `x_in` at `timestep`."""
        hidden = torch.cat([x_in.to(self.dtype), condition.to(self.dtype)], dim=self.layout.dim)
        output = self.transformer(
            **{self.layout.input: hidden, "timestep": timestep}, **inputs, **self.fixed, return_dict=False
        )
        return output[0].to(x_in.dtype)


@dataclass
class PipelineSetup:
    """Everything k-diffusion needs to sample a diffusers pipeline's model; made by `from_pipeline`.

    Sample from `noise * sigmas[0]` over `sigmas` (or any schedule of your own) with
    [`guide`][alg_guidance.integrations.k_diffusion.pipeline.PipelineSetup.guide]`()` as the model, then
    [`decode`][alg_guidance.integrations.k_diffusion.pipeline.PipelineSetup.decode] the result.

    Attributes:
        pipeline: The pipeline.
        adapter: The adapter serving it.
        denoiser: The k-diffusion denoiser: the transformer in its parameterization wrapper, called as
            `denoiser(x, sigma, condition=..., **inputs)`.
        image_cond: The inputs every branch shares: under `"condition"` every channel after the latents (the image
            latent, and the mask of the models that take one), and unfiltered image inputs (Wan's CLIP image
            embeddings).
        layout: Where the image latent sits in `image_cond`, the part ALG low-passes.
        cond: The conditional branch's inputs (the prompt embeddings).
        uncond: The unconditional branch's inputs, `None` when the pipeline ran without CFG.
        cfg_scale: The run's CFG scale (1 without CFG).
        noise: The pipeline's initial noise, unit variance, shaped like the latents (float32, holding the values the
            transformer received, so rounded to its dtype).
        sigmas: The pipeline scheduler's schedule as k-diffusion sigmas, ending in 0.
        arguments: The pipeline call's arguments by name, defaults applied.
    """

    pipeline: Any
    adapter: Adapter
    denoiser: torch.nn.Module
    image_cond: dict[str, Any]
    layout: ChannelSlice
    cond: dict[str, Any]
    uncond: dict[str, Any] | None
    cfg_scale: float
    noise: torch.Tensor
    sigmas: torch.Tensor
    arguments: dict[str, Any]

    def guide(
        self, config: Any = None, *, sigmas: torch.Tensor | None = None, registry: Registry | None = None
    ) -> GuidedDenoiser:
        """The guided denoiser for this pipeline's conditioning.

        Args:
            config: An `ALGConfig`, mapping, preset name or YAML/JSON path; the adapter's preset if `None`.
            sigmas: The schedule the sampler will follow; `self.sigmas` if `None`.
            registry: Where to look up filter and schedule kinds.
        """
        return guide(
            self.denoiser,
            self.adapter.preset if config is None else config,
            image_cond=self.image_cond,
            cond=self.cond,
            uncond=self.uncond,
            cfg_scale=self.cfg_scale,
            layout=self.layout,
            sigmas=self.sigmas if sigmas is None else sigmas,
            registry=registry,
        )

    def decode(self, latents: torch.Tensor, output_type: str = "np") -> Any:
        """The frames of sampled latents, as the pipeline returns them (`output_type` "np", "pil" or "pt")."""
        with torch.no_grad():
            return self.adapter.decode(self.pipeline, latents, self.arguments, output_type)


class _FirstStep(Exception):
    """Raised by the patched scheduler to stop the pipeline at its first step."""


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    """Set an instance attribute for the block, then restore whatever the instance held before."""
    had, before = name in vars(target), vars(target).get(name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if had:
            setattr(target, name, before)
        else:
            delattr(target, name)


def capture_first_step(pipeline: Any, call_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The named inputs of the transformer calls of the pipeline's first step; the transformer itself never runs.

    The pipeline runs with `call_kwargs` until it hands its first prediction to `scheduler.step`; each transformer
    call returns its own `hidden_states` as a stand-in prediction, which only the stopped step would have used.
    """
    transformer = pipeline.transformer
    signature = inspect.signature(type(transformer).forward)
    signature = signature.replace(parameters=list(signature.parameters.values())[1:])  # without self
    latent_input = next(iter(signature.parameters))
    calls: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        calls.append(named_inputs(signature, args, kwargs))
        return (calls[-1][latent_input],)

    def stop(*args: Any, **kwargs: Any) -> None:
        raise _FirstStep

    quiet = {**getattr(pipeline, "_progress_bar_config", {}), "disable": True}  # no bar stuck at step 0
    with (
        _patched(transformer, "forward", recording),
        _patched(pipeline.scheduler, "step", stop),
        _patched(pipeline, "_progress_bar_config", quiet),
    ):
        try:
            pipeline(**call_kwargs)
        except _FirstStep:
            return calls
    raise ALGError(f"{type(pipeline).__name__} returned without calling its scheduler's step")


def from_pipeline(
    pipeline: Any,
    *,
    adapter: str | None = None,
    max_noise_level: float = 0.999,
    registry: Registry | None = None,
    **call_kwargs: Any,
) -> PipelineSetup:
    """Build a k-diffusion denoiser and its conditioning from a diffusers image-to-video pipeline.

    The pipeline runs with `call_kwargs` (image, prompt or prompt embeddings, size, frame count, guidance scale,
    step count, generator...) through its preprocessing and encoding, and stops before its transformer runs.
    Serves the families whose image condition is concatenated to the latents along the channels: Wan 2.1 and
    SkyReels-V2 (flow matching, sequential CFG), CogVideoX 1.0/1.5 (discrete v-prediction, batched CFG),
    HunyuanVideo-I2V-33ch and SkyReels-V1-Hunyuan (flow matching; embedded guidance, or true CFG) and
    HunyuanVideo 1.5 (flow matching, its CFG guider). The others are refused with the reason their adapter gives.

    Args:
        pipeline: A diffusers image-to-video pipeline of a served family.
        adapter: The adapter's registry name, to choose one instead of detecting it.
        max_noise_level: Flow-matching schedules start at pure noise, `t = 1`, an infinite sigma: the schedule's
            noise levels are capped at this value (0.999: sigma 999).
        registry: Where to look up adapters.
        **call_kwargs: The arguments of a pipeline call.

    Returns:
        The denoiser, conditioning, noise, sigma schedule and decoder.

    Raises:
        ALGError: No adapter serves the pipeline, its family cannot be sampled this way (the message says why),
            the run uses a CFG scale that changes during sampling, or the schedule cannot be capped below
            `max_noise_level` and still decrease.

    Examples:
        ```python
        setup = alg.k_diffusion.from_pipeline(pipe, image=image, prompt=prompt, num_inference_steps=30)
        sampling = alg.k_diffusion.load_sampling()
        latents = sampling.sample_dpmpp_2m(setup.guide("wan2.1"), setup.noise * setup.sigmas[0], setup.sigmas)
        frames = setup.decode(latents)[0]
        ```
    """
    served = find_adapter(pipeline, adapter, registry)
    refusal = served.k_diffusion_refusal
    layout = served.layout(pipeline, {}) if refusal is None else None
    if refusal is None and not (isinstance(layout, ChannelSlice) and len(served.denoisers(pipeline)) == 1):
        refusal = f"its condition is {layout} on {len(served.denoisers(pipeline))} denoisers"
    if refusal is not None:
        raise ALGError(
            f"from_pipeline cannot sample {type(pipeline).__name__} ({served.name}) with k-diffusion: {refusal}. "
            "It samples families whose condition is concatenated to the latents along the channels, with one "
            "transformer"
        )
    if call_kwargs.get("use_dynamic_cfg"):
        raise ALGError("from_pipeline uses one CFG scale for the whole run; use_dynamic_cfg=True is not supported")
    arguments = _call_arguments(pipeline, call_kwargs)
    with torch.no_grad():
        calls = capture_first_step(pipeline, call_kwargs)
    uses_cfg = served.uses_cfg(pipeline) if served.guidance == "batched" else len(calls) > 1
    cond, uncond = _branches(served, calls, bool(uses_cfg))
    hidden = cond[layout.input]
    if cond["timestep"].ndim != 1:
        shape = tuple(cond["timestep"].shape)
        raise ALGError(f"from_pipeline needs one timestep per sample, got a timestep of shape {shape}")
    model = TransformerModel(pipeline.transformer, layout, _fixed_inputs(served, layout, cond), hidden.dtype)
    noise = hidden.narrow(layout.dim, 0, layout.start).to(torch.float32, copy=True)
    denoiser, sigmas = _parameterization(pipeline.scheduler, model, max_noise_level)
    image_cond, cond_inputs, uncond_inputs = _split_inputs(served, layout, cond, uncond)
    image_cond[CONDITION] = hidden.narrow(layout.dim, layout.start, hidden.shape[layout.dim] - layout.start).clone()
    stop = None if layout.stop is None else layout.stop - layout.start
    return PipelineSetup(
        pipeline=pipeline,
        adapter=served,
        denoiser=denoiser.to(noise.device),
        image_cond=image_cond,
        layout=ChannelSlice(CONDITION, dim=layout.dim, start=0, stop=stop),
        cond=cond_inputs,
        uncond=uncond_inputs,
        cfg_scale=served.guidance_scale(pipeline, arguments) if uses_cfg else 1.0,
        noise=noise,
        sigmas=sigmas.to(noise.device),
        arguments=arguments,
    )


def _call_arguments(pipeline: Any, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A pipeline call's arguments by name, defaults applied."""
    bound = inspect.signature(type(pipeline).__call__).bind(pipeline, **call_kwargs)
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name != "self"}


def _branches(adapter: Adapter, calls: list[dict[str, Any]], uses_cfg: bool) -> tuple[dict, dict | None]:
    """The (cond, uncond) transformer inputs of the first step; uncond is `None` without CFG."""
    if adapter.guidance == "batched":
        if not uses_cfg:
            return calls[0], None
        batch = calls[0][adapter.batched_inputs[0]].shape[0]
        uncond, cond = split_batch(calls[0], 2, batch, adapter.batched_inputs)
        return cond, uncond
    return calls[0], calls[1] if uses_cfg else None


def _fixed_inputs(adapter: Adapter, layout: ChannelSlice, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs that are not per-sample tensors (rotary embeddings, `ofs`, attention kwargs), passed to every call."""
    return {
        name: value
        for name, value in inputs.items()
        if name not in (layout.input, "timestep", "return_dict")
        and not (name in adapter.batched_inputs and isinstance(value, torch.Tensor))
    }


def _split_inputs(
    adapter: Adapter, layout: ChannelSlice, cond: dict, uncond: dict | None
) -> tuple[dict, dict, dict | None]:
    """The per-sample inputs besides the latent and timestep: shared by both branches (image) or not (prompt)."""
    shared, cond_inputs, uncond_inputs = {}, {}, None if uncond is None else {}
    for name in adapter.batched_inputs:
        value = cond.get(name)
        if name in (layout.input, "timestep") or not isinstance(value, torch.Tensor):
            continue
        if uncond is None or torch.equal(value, uncond[name]):
            shared[name] = value
        else:
            cond_inputs[name], uncond_inputs[name] = value, uncond[name]
    return shared, cond_inputs, uncond_inputs


def _parameterization(scheduler: Any, model: TransformerModel, max_noise_level: float):
    """The wrapper of the scheduler's prediction type, and the scheduler's schedule as k-diffusion sigmas."""
    steps = len(scheduler.timesteps)
    if is_flow_matching(scheduler):
        times = scheduler.sigmas[:steps].detach().to("cpu", torch.float64).clamp(max=max_noise_level)
        sigmas = torch.cat([FlowMatchingDenoiser.sigma_of_time(times), times.new_zeros(1)]).float()
        if not bool((sigmas[1:] < sigmas[:-1]).all()):
            raise ALGError(
                f"capping the schedule's noise levels at max_noise_level={max_noise_level} leaves equal sigmas; "
                "raise max_noise_level closer to 1 or use fewer steps"
            )
        return FlowMatchingDenoiser(model, float(scheduler.config.num_train_timesteps)), sigmas
    wrappers = {"v_prediction": DiscreteVDenoiser, "epsilon": DiscreteEpsDenoiser}
    prediction = scheduler.config.get("prediction_type")
    if prediction not in wrappers:
        raise ALGError(f"{type(scheduler).__name__} predicts {prediction!r}; from_pipeline handles flow, v and epsilon")
    denoiser = wrappers[prediction](model, scheduler.alphas_cumprod)
    return denoiser, denoiser.schedule(scheduler.timesteps.cpu())
