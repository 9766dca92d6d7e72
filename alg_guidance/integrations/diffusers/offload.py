"""Living with diffusers' model CPU offload (`enable_model_cpu_offload`).

Model offload wraps each model's forward in an accelerate hook that moves the model onto the accelerator when
it runs and the model before it (in `model_cpu_offload_seq`) back to the CPU, and it re-installs those hooks
after every pipeline call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def model_offload_active(pipeline: Any) -> bool:
    """Whether `enable_model_cpu_offload` is in effect on `pipeline` (it keeps its hooks in `_all_hooks`)."""
    return bool(getattr(pipeline, "_all_hooks", None))


@contextlib.contextmanager
def model_offload_paused(pipeline: Any, denoisers: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Take model offload's hooks off while diffusers hooks change on the denoisers, then put them back.

    A diffusers hook registered under an accelerate hook would be dropped when offload re-installs its hooks
    after the next call, and removing one would drop the accelerate hook instead.
    """
    offloaded = model_offload_active(pipeline) and any(hasattr(denoiser, "_hf_hook") for denoiser in denoisers)
    offload_device = getattr(pipeline, "_offload_device", None)
    if offloaded:
        pipeline.remove_all_hooks()
    try:
        yield
    finally:
        if offloaded:
            pipeline.enable_model_cpu_offload(device=offload_device)


def return_to_denoiser(pipeline: Any, denoiser: torch.nn.Module) -> None:
    """After a VAE encode inside a denoiser call, put the models back as offload had them for the denoiser.

    Encoding runs the VAE through its offload hook, which brings the VAE onto the accelerator and sends the model
    before it in the sequence (the denoiser, still mid-call) to the CPU. This sends the other offloaded models
    back to the CPU and the denoiser back onto the accelerator, as its own hook does before it runs.
    """
    if not model_offload_active(pipeline):
        return
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module) and component is not denoiser and hasattr(component, "_hf_hook"):
            component.to("cpu")
    denoiser._hf_hook.pre_forward(denoiser)
