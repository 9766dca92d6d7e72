"""The ALG low-pass written independently of the library, from the paper's definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def down_up(x: torch.Tensor, factor: float, strength: float) -> torch.Tensor:
    """Bilinear antialiased resize of every (H, W) plane to round(H r) x round(W r) and back, r = 1 - (1 - factor) s."""
    if strength == 0:
        return x
    resize = 1.0 - (1.0 - factor) * strength
    height, width = x.shape[-2:]
    planes = x.reshape(-1, 1, height, width).float()
    size = (max(1, round(height * resize)), max(1, round(width * resize)))
    down = F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=True)
    up = F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return up.to(x.dtype).reshape(x.shape)
