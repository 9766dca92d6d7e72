"""A tiny conditional model for k-diffusion tests, whose image and text conditions interact.

With a model whose image and text conditions act additively, `D(x, I, c) = f(x) + g(I) + h(c)`, ALG collapses to
plain CFG (the image terms cancel in `D(LP(I), c) - D(LP(I), ∅)`), so a test could not tell them apart. Here the
text embedding gates the features of the image condition, a product of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

CHANNELS = 4
TEXT_DIM = 8
SHAPE = (1, CHANNELS, 2, 32, 32)  # [B, C, F, H, W]


class TinyNetwork(nn.Module):
    """A raw network `net(x_in, timestep, *, image, text)` as diffusers models are called.

    A 3-D convolution over the latent and the image condition, gated by a projection of the text embedding, plus a
    timestep embedding; bounded output.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(2 * CHANNELS, CHANNELS, kernel_size=3, padding=1)
        self.gate = nn.Linear(TEXT_DIM, CHANNELS)
        self.time = nn.Linear(1, CHANNELS)

    def forward(self, x_in: torch.Tensor, timestep: torch.Tensor, *, image: torch.Tensor, text: torch.Tensor):
        features = self.conv(torch.cat([x_in, image], dim=1))
        gate = self.gate(text)[:, :, None, None, None]
        time = self.time(timestep.reshape(-1, 1).to(x_in.dtype) / 1000)[:, :, None, None, None]
        return torch.tanh(features * (1 + gate) + time)


class TinyDenoiser(nn.Module):
    """A k-diffusion denoiser `D(x, sigma, *, image, text)` in k-diffusion's own convention (`x = x0 + sigma * n`).

    Karras et al.'s preconditioning with `sigma_data = 1` around `TinyNetwork`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNetwork()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, *, image: torch.Tensor, text: torch.Tensor):
        s = sigma.reshape(-1, 1, 1, 1, 1)
        scale = (1 + s**2).rsqrt()
        return x * scale**2 + s * scale * self.net(x * scale, sigma.log() * 250, image=image, text=text)


def conditions(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An image condition full of high frequencies, and a conditional and an unconditional text embedding."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(SHAPE, generator=generator)
    text = torch.randn(2, TEXT_DIM, generator=generator)
    return image, text[:1], text[1:]


@dataclass
class Call:
    """One recorded call of a denoiser."""

    sigma: torch.Tensor
    inputs: dict[str, Any]

    @property
    def batch(self) -> int:
        """The batch size of the call."""
        return self.sigma.shape[0]


@dataclass
class Recorder:
    """A denoiser that records the sigma and inputs of every call, then calls the one it wraps."""

    denoiser: Any
    calls: list[Call] = field(default_factory=list)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **inputs: Any) -> torch.Tensor:
        cloned = {name: value.clone() if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
        self.calls.append(Call(sigma.clone(), cloned))
        return self.denoiser(x, sigma, **inputs)
