"""Where the image condition sits in a denoiser's inputs, and how to swap in a low-passed one.

A layout reads the condition out of the denoiser's keyword inputs (`get`) and builds new inputs with another
condition in its place (`put`), never writing into the caller's tensors. The filters act on the last two
dimensions, so `get` returns the condition with height and width last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class ConditionLayout(Protocol):
    """How an adapter finds the image condition in the denoiser's inputs."""

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The image condition, with height and width as its last two dimensions."""

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """New inputs with `condition` (shaped as `get` returns it) in place of the current one."""


def _replace_range(x: torch.Tensor, dim: int, start: int, part: torch.Tensor) -> torch.Tensor:
    stop = start + part.shape[dim]
    pieces = [x.narrow(dim, 0, start), part.to(x.dtype), x.narrow(dim, stop, x.shape[dim] - stop)]
    return torch.cat([piece for piece in pieces if piece.shape[dim] > 0], dim=dim)


@dataclass(frozen=True)
class ChannelSlice:
    """The condition is a run of channels concatenated to the latents along `dim`.

    Wan 2.1: `ChannelSlice("hidden_states", dim=1, start=16, stop=36)` on `[B, C, F, H, W]`;
    CogVideoX: `ChannelSlice("hidden_states", dim=2, start=16)` on frame-major `[B, F, C, H, W]`.

    Attributes:
        input: The name of the denoiser input holding the concatenation.
        dim: The channel dimension.
        start: The first condition channel.
        stop: One past the last condition channel (`None`: to the end).
    """

    input: str
    dim: int
    start: int
    stop: int | None = None

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The condition channels, a view of the input."""
        x = inputs[self.input]
        stop = x.shape[self.dim] if self.stop is None else self.stop
        return x.narrow(self.dim, self.start, stop - self.start)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with the condition channels replaced."""
        return {**inputs, self.input: _replace_range(inputs[self.input], self.dim, self.start, condition)}


@dataclass(frozen=True)
class FirstFrame:
    """The condition is the first latent frame, which the pipeline overwrites with the image latent.

    HunyuanVideo I2V "token_replace" and Wan 2.2 TI2V-5B: `FirstFrame("hidden_states", frame_dim=2)`.

    Attributes:
        input: The name of the denoiser input holding the latent video.
        frame_dim: The frame dimension.
    """

    input: str
    frame_dim: int

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The first frame, a view of the input."""
        return inputs[self.input].narrow(self.frame_dim, 0, 1)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with the first frame replaced."""
        return {**inputs, self.input: _replace_range(inputs[self.input], self.frame_dim, 0, condition)}


@dataclass(frozen=True)
class PackedFirstFrame:
    """The condition is one latent frame of a token sequence `[B, F * H * W, C]` packed with patch size 1.

    LTX-Video packs its latent video into tokens frame by frame, row by row, so the `H * W` tokens from
    `offset` on are one frame: the conditioning frame 0 at `offset=0` in `LTXImageToVideoPipeline`, and after
    the extra keyframe tokens that `LTXConditionPipeline` puts in front of the video. The frame's latent
    height and width come from the inputs named `height` and `width`, or from `size`.

    Attributes:
        input: The name of the token input.
        height: The name of the input holding the latent height (ignored when `size` is given).
        width: The name of the input holding the latent width (ignored when `size` is given).
        size: A fixed latent `(height, width)`.
        offset: The index of the frame's first token.
    """

    input: str
    height: str = "height"
    width: str = "width"
    size: tuple[int, int] | None = None
    offset: int = 0

    def _size(self, inputs: Mapping[str, Any]) -> tuple[int, int]:
        return self.size if self.size is not None else (int(inputs[self.height]), int(inputs[self.width]))

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The frame's tokens as `[B, C, H, W]`, a view of the input."""
        height, width = self._size(inputs)
        tokens = inputs[self.input].narrow(1, self.offset, height * width)
        return tokens.unflatten(1, (height, width)).permute(0, 3, 1, 2)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with the frame's tokens replaced."""
        tokens = condition.permute(0, 2, 3, 1).flatten(1, 2)
        return {**inputs, self.input: _replace_range(inputs[self.input], 1, self.offset, tokens)}


@dataclass(frozen=True)
class WholeInput:
    """The condition is a whole keyword input of the denoiser, with height and width as its last two dimensions.

    The layout of a k-diffusion denoiser that takes its image condition as its own argument (the denoisers
    [`from_pipeline`][alg_guidance.integrations.k_diffusion.pipeline.from_pipeline] builds take `condition`).

    Attributes:
        input: The keyword.

    Examples:
        >>> layout = WholeInput("image_latents")
        >>> layout.put({"image_latents": 1, "text": 2}, 3)
        {'image_latents': 3, 'text': 2}
    """

    input: str

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The input itself."""
        return inputs[self.input]

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with this one replaced."""
        return {**inputs, self.input: condition}
