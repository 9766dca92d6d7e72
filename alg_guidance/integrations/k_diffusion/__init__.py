"""ALG for k-diffusion samplers: `alg.k_diffusion`.

- [`guide`][alg_guidance.integrations.k_diffusion.guide.guide] wraps a k-diffusion denoiser and its conditioning
  into a guided denoiser that every sampler of `k_diffusion.sampling` accepts;
- [`load_sampling`][alg_guidance.integrations.k_diffusion.loader.load_sampling] returns k-diffusion's sampler
  module, also where `import k_diffusion` fails;
- the [parameterization wrappers][alg_guidance.integrations.k_diffusion.parameterizations] make k-diffusion
  denoisers of flow-matching, v-prediction and epsilon-prediction models;
- [`from_pipeline`][alg_guidance.integrations.k_diffusion.pipeline.from_pipeline] builds the denoiser, the
  conditioning, the noise, the schedule and the decoder from a diffusers image-to-video pipeline (it imports
  diffusers; nothing else here does).

Importing this module imports neither k-diffusion nor diffusers.
"""

from __future__ import annotations

from ...adapters.layouts import WholeInput
from ...engine.progress import SigmaProgress
from .guide import GuidedDenoiser, guide
from .loader import load_sampling
from .parameterizations import DiscreteEpsDenoiser, DiscreteVDenoiser, FlowMatchingDenoiser


def __getattr__(name: str):
    """Import the diffusers-based pipeline helper on first use."""
    if name in ("from_pipeline", "PipelineSetup"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, with the lazily imported ones."""
    return sorted({*globals(), *__all__})


__all__ = [
    "DiscreteEpsDenoiser",
    "DiscreteVDenoiser",
    "FlowMatchingDenoiser",
    "GuidedDenoiser",
    "PipelineSetup",
    "SigmaProgress",
    "WholeInput",
    "from_pipeline",
    "guide",
    "load_sampling",
]
