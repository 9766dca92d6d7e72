r"""The demo model: a small pixel-space video diffusion transformer, as a diffusers model class.

[`DemoVideoTransformer`][alg_guidance.demo.model.DemoVideoTransformer] predicts the rectified-flow velocity
\(v = \epsilon - x_0\) of an RGB clip \(x_t = (1 - t) x_0 + t \epsilon\) (pixels in `[-1, 1]`) from the noisy clip,
the timestep `t * 1000`, a label (one of `LABELS`, or the null label `num_labels` that label dropout trains for
classifier-free guidance) and, after image-to-video fine-tuning, an image condition: the first frame in frame 0 of
a clip-shaped tensor plus a mask channel that marks it, `[B, 4, F, H, W]`, as Wan 2.1 concatenates its condition.
Patches are 1 x `patch` x `patch` pixels; every token attends to every other; the timestep and the label modulate
each block (adaLN-zero, Peebles and Xie 2023). The image condition enters through its own patch embedding, added to
the clip's tokens and initialised to zero, so a label-to-video model is an image-to-video model that ignores the
image, and fine-tuning starts from it exactly.

It is a `ModelMixin` and `ConfigMixin`: `save_pretrained` writes `config.json` and safetensors weights,
`from_pretrained` reads them back. Needs diffusers (the `diffusers` extra).
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

CONDITION_CHANNELS = 4
"""Channels of the image condition: the first frame's RGB, then the mask that marks the given frame."""


def image_condition(image: torch.Tensor, frames: int) -> torch.Tensor:
    """The image condition of a clip of `frames` frames: `image` (`[B, 3, H, W]`, in `[-1, 1]`) in frame 0, a mask.

    Returns:
        `[B, 4, frames, H, W]`: RGB channels holding `image` in frame 0 and zeros after, and a mask channel of ones
        in frame 0 and zeros after.

    Examples:
        >>> image_condition(torch.zeros(2, 3, 8, 8), 5).shape
        torch.Size([2, 4, 5, 8, 8])
    """
    batch, _, height, width = image.shape
    condition = image.new_zeros(batch, CONDITION_CHANNELS, frames, height, width)
    condition[:, :3, 0] = image
    condition[:, 3, 0] = 1.0
    return condition


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings `[N, dim]` of `positions` `[N]` (dim even)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def positional_embedding(frames: int, rows: int, columns: int, width: int) -> torch.Tensor:
    """Fixed 3-D sin-cos embeddings of the tokens of a `frames x rows x columns` grid, `[tokens, width]`.

    A quarter of the width encodes time, three eighths each rows and columns (rounded to even).
    """
    time_dim = (width // 4) // 2 * 2
    row_dim = ((width - time_dim) // 2) // 2 * 2
    column_dim = width - time_dim - row_dim
    f, r, c = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(columns), indexing="ij")
    parts = [_sincos(f.reshape(-1), time_dim), _sincos(r.reshape(-1), row_dim), _sincos(c.reshape(-1), column_dim)]
    return torch.cat(parts, dim=1)


class Block(nn.Module):
    """A transformer block modulated by the conditioning vector (adaLN-zero)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """`x` `[B, N, width]` after attention and MLP, modulated by `c` `[B, width]`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        h = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + gate1 * self.proj(h)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class DemoVideoTransformer(ModelMixin, ConfigMixin):
    """A pixel-space video diffusion transformer with label and image conditioning (see the module docstring).

    Args:
        channels: Colour channels of the clip.
        frames: Frames per clip (the positional grid adapts to any count; training fixes one).
        size: Height and width of a frame, a multiple of `patch`.
        patch: The spatial patch size (patches are 1 frame deep).
        width: The token width, a multiple of `heads`.
        depth: The number of transformer blocks.
        heads: Attention heads.
        num_labels: Labels; the index `num_labels` is the null label of classifier-free guidance.
        timestep_scale: The timestep at `t = 1` (the convention of diffusers' flow-matching transformers).
    """

    @register_to_config
    def __init__(
        self,
        channels: int = 3,
        frames: int = 16,
        size: int = 32,
        patch: int = 4,
        width: int = 256,
        depth: int = 6,
        heads: int = 4,
        num_labels: int = 4,
        timestep_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if size % patch or width % heads or width % 8:
            raise ValueError(f"size must be a multiple of patch and width of heads and of 8, got {size}, {width}")
        self.embed = nn.Conv3d(channels, width, (1, patch, patch), stride=(1, patch, patch))
        self.embed_condition = nn.Conv3d(CONDITION_CHANNELS, width, (1, patch, patch), stride=(1, patch, patch))
        nn.init.zeros_(self.embed_condition.weight)
        nn.init.zeros_(self.embed_condition.bias)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.labels = nn.Embedding(num_labels + 1, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, patch * patch * channels)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_label(self) -> int:
        """The label index of the unconditional branch."""
        return self.config.num_labels

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        label: torch.Tensor,
        image_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity of `hidden_states` `[B, C, F, H, W]` at `timestep` `[B]` (or one value).

        `label` is `[B]` (or one value); `image_cond` is `[B, 4, F, H, W]`, or `None` (as in label-to-video training).
        """
        batch, _, frames, height, width = hidden_states.shape
        patch = self.config.patch
        x = self.embed(hidden_states)
        if image_cond is not None:
            x = x + self.embed_condition(image_cond.to(x.dtype))
        rows, columns = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = x + positional_embedding(frames, rows, columns, x.shape[-1]).to(x)
        timestep = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(batch)
        label = torch.as_tensor(label, device=x.device).reshape(-1).expand(batch)
        c = self.time(_sincos(timestep, x.shape[-1]).to(x)) + self.labels(label)
        c = nn.functional.silu(c)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=-1)
        x = self.out(self.norm(x) * (1 + scale) + shift)
        x = x.reshape(batch, frames, rows, columns, patch, patch, -1)
        return x.permute(0, 6, 1, 2, 4, 3, 5).reshape(batch, -1, frames, height, width)
