"""Sampling the demo model through the project's k-diffusion integration, with or without ALG.

The model predicts a rectified-flow velocity; [`FlowMatchingDenoiser`][alg_guidance.integrations.k_diffusion.
parameterizations.FlowMatchingDenoiser] makes it a k-diffusion denoiser, k-diffusion's own Euler sampler (loaded by
[`load_sampling`][alg_guidance.integrations.k_diffusion.loader.load_sampling]) steps it, and with an ALG config
[`alg.k_diffusion.guide`][alg_guidance.integrations.k_diffusion.guide.guide] low-passes the image condition
(the keyword input `image_cond`, RGB and mask channels over every frame) while its schedule is active. Without a
config the same sampler runs plain classifier-free guidance `u + w (c - u)`, one batch of both branches per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ALGConfig, resolve_config
from ..integrations.k_diffusion import FlowMatchingDenoiser, guide, load_sampling
from .model import DemoVideoTransformer, image_condition

MAX_TIME = 0.999
"""The first noise level of a schedule: flow time `t = 0.999` (pure noise, `t = 1`, is an infinite sigma)."""

DEFAULT_ALG = "wan2.1"
"""The ALG setting the demo uses unless told otherwise: down-up factor 0.4 over the first 20 % of steps."""

CONSTANT_LOW_PASS: dict[str, Any] = {
    "filter": {"kind": "downsample", "factor": 0.4},
    "schedule": {"kind": "constant", "value": 1.0},
    "mode": "replace",
}
"""The baseline ALG improves on: the image condition low-passed at every step, in both CFG branches."""


def flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """k-diffusion sigmas `t / (1 - t)` of `steps` evenly spaced flow times from `MAX_TIME` down, then 0.

    `shift` warps the times as diffusers' flow-matching schedulers do: `t' = shift t / (1 + (shift - 1) t)`.

    Examples:
        >>> flow_sigmas(3).shape
        torch.Size([4])
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    times = torch.linspace(MAX_TIME, 0.0, steps + 1, dtype=torch.float64)[:-1]
    times = shift * times / (1 + (shift - 1) * times)
    return torch.cat([FlowMatchingDenoiser.sigma_of_time(times), times.new_zeros(1)]).float()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DemoVideoTransformer:
    """A saved demo model (a `save_pretrained` folder: `config.json` and safetensors), in float32, for inference.

    Raises:
        OSError: `path` holds no saved model.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise OSError(f"{path} holds no demo model (no config.json); give a folder written by the training script")
    model = DemoVideoTransformer.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    return model.to(device).eval()


def as_config(config: Any) -> ALGConfig | None:
    """`None` (no ALG), or the ALG config of a preset name, mapping, path or `ALGConfig`."""
    return None if config is None else resolve_config(config)


@torch.no_grad()
def sample(
    model: DemoVideoTransformer,
    labels: torch.Tensor,
    *,
    image: torch.Tensor | None = None,
    config: Any = None,
    cfg_scale: float = 2.5,
    steps: int = 30,
    seed: int = 0,
    frames: int | None = None,
    shift: float = 1.0,
    progress: bool = False,
) -> torch.Tensor:
    """Sample clips from the demo model with k-diffusion's Euler sampler.

    Args:
        model: The demo model.
        labels: One label index per clip, `[B]`.
        image: The first frames, `[B, 3, H, W]` in `[-1, 1]`; `None` samples label-to-video.
        config: An ALG config (an `ALGConfig`, preset name, mapping or path), or `None` for plain CFG.
        cfg_scale: The classifier-free guidance scale `w` (1: no unconditional branch).
        steps: Sampling steps.
        seed: The seed of the initial noise (drawn on the CPU, so the same on every device).
        frames: Frames per clip (the model's training count if `None`).
        shift: The flow-time shift of the schedule.
        progress: Show k-diffusion's progress bar.

    Returns:
        Clips in `[-1, 1]`, `[B, 3, F, H, W]`, float32 on the model's device.

    Raises:
        ValueError: An ALG config without an image (ALG needs an image condition).
    """
    settings = as_config(config)
    if settings is not None and image is None:
        raise ValueError("ALG low-passes the image condition; label-to-video sampling takes no ALG config")
    device = model.device
    frames = frames or model.config.frames
    size = model.config.size
    labels = torch.as_tensor(labels, device=device).reshape(-1)
    batch = len(labels)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(batch, model.config.channels, frames, size, size, generator=generator).to(device)
    sigmas = flow_sigmas(steps, shift).to(device)
    denoiser = FlowMatchingDenoiser(model, model.config.timestep_scale)
    shared = {} if image is None else {"image_cond": image_condition(image.to(device, torch.float32), frames)}
    cond = {"label": labels}
    uncond = {"label": torch.full_like(labels, model.null_label)} if cfg_scale != 1 else None
    if settings is not None:
        guided = guide(denoiser, settings, image_cond=shared, cond=cond, uncond=uncond, cfg_scale=cfg_scale)
        guided.sigmas = sigmas
    else:
        guided = _plain_cfg(denoiser, shared, cond, uncond, cfg_scale)
    sampling = load_sampling()
    return sampling.sample_euler(guided, noise * sigmas[0], sigmas, disable=not progress)


def _plain_cfg(denoiser, shared: dict, cond: dict, uncond: dict | None, cfg_scale: float):
    """Classifier-free guidance `u + w (c - u)`, both branches in one batch; the conditional branch alone at w = 1."""

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if uncond is None:
            return denoiser(x, sigma, **shared, **cond)
        inputs = {name: torch.cat([value, value]) for name, value in shared.items()}
        inputs["label"] = torch.cat([uncond["label"], cond["label"]])
        u, c = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **inputs).chunk(2)
        return u + cfg_scale * (c - u)

    return guided


def to_frames(clips: torch.Tensor) -> np.ndarray:
    """Clips `[B, 3, F, H, W]` in `[-1, 1]` as `uint8` RGB frames `[B, F, H, W, 3]`."""
    pixels = ((clips.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).cpu().numpy()


def to_image(frame: np.ndarray) -> torch.Tensor:
    """A `uint8` RGB image `[H, W, 3]` as a model input `[1, 3, H, W]` in `[-1, 1]`."""
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 127.5 - 1
