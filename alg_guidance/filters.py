"""Low-pass filters applied to the image condition.

Every filter is a frozen pydantic model called as `filter(x, strength)`. It acts on each `(H, W)` plane
of a tensor of any rank (the last two dimensions are height and width), so `[B, C, H, W]`,
`[B, C, F, H, W]` and frame-major `[B, F, C, H, W]` latents all work. `strength` runs from 0 (the input
itself, returned as the same object) to 1 (the filter at its configured setting).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigError
from .hookspecs import hookimpl

HALF_DTYPES = (torch.float16, torch.bfloat16)

Fraction = Annotated[float, Field(strict=True, gt=0, lt=1, allow_inf_nan=False)]


def check_strength(strength: float) -> float:
    """Return `strength` as a float after checking that it is a real number in `[0, 1]`.

    Raises:
        TypeError: `strength` is a tensor (reading it would synchronize with the device) or not a number.
        ValueError: `strength` lies outside `[0, 1]` or is NaN.
    """
    if isinstance(strength, torch.Tensor | bool) or not isinstance(strength, int | float):
        raise TypeError(f"strength must be a Python float in [0, 1], got {type(strength).__name__}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    return float(strength)


class Filter(BaseModel):
    """Base class of every low-pass filter.

    Subclasses declare `kind: Literal["name"] = "name"`, their parameters as validated fields, and
    implement [`filter_planes`][alg_guidance.filters.Filter.filter_planes]. Calling the filter takes care of the
    rest: strength validation, the identity at strength 0, any rank, non-contiguous input, and half
    precision (computed in float32, returned in the input's dtype) on the input's device.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str

    def __call__(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        """Low-pass `x` at `strength`.

        Args:
            x: A floating-point tensor whose last two dimensions are height and width.
            strength: How strongly to filter, in `[0, 1]`; 0 returns `x` itself.

        Returns:
            A tensor of the shape, dtype and device of `x`.

        Examples:
            >>> import torch
            >>> from alg_guidance.filters import Downsample
            >>> latent = torch.randn(1, 16, 21, 60, 104)
            >>> Downsample(factor=0.4)(latent, 1.0).shape
            torch.Size([1, 16, 21, 60, 104])
            >>> Downsample(factor=0.4)(latent, 0.0) is latent
            True
        """
        strength = check_strength(strength)
        if strength == 0.0:
            return x
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            found = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{self.kind} filter needs a floating-point tensor, got {found}")
        if x.ndim < 2:
            raise ValueError(f"{self.kind} filter needs a tensor of rank >= 2 ending in (H, W), got {x.ndim}-D")
        planes = x.reshape(-1, 1, *x.shape[-2:])
        if planes.dtype in HALF_DTYPES:
            planes = planes.float()
        return self.filter_planes(planes, strength).to(x.dtype).reshape(x.shape)

    def filter_planes(self, planes: torch.Tensor, strength: float) -> torch.Tensor:
        """Filter a stack of planes; the one method a filter implements.

        Args:
            planes: A float32 or float64 tensor of shape `[N, 1, H, W]`.
            strength: A float in `(0, 1]`.

        Returns:
            A tensor of the same shape.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement filter_planes(planes, strength)")


class Downsample(Filter):
    """Bilinear down-then-up resampling, the filter of the ALG paper and its official configurations.

    At strength `s` the planes are resized to `round(H * r) x round(W * r)` (at least 1 x 1) and back to
    `H x W`, both with antialiased bilinear interpolation, where `r = 1 - (1 - factor) * s`.

    Attributes:
        factor: The resize factor at strength 1, in `(0, 1)`; smaller keeps less detail. Default `0.4`.

    Examples:
        >>> Downsample(factor=0.4).factor_at(0.5)
        0.7
    """

    kind: Literal["downsample"] = "downsample"
    factor: Fraction = 0.4

    def factor_at(self, strength: float) -> float:
        """The resize factor used at `strength`."""
        return 1.0 - (1.0 - self.factor) * strength

    def filter_planes(self, planes: torch.Tensor, strength: float) -> torch.Tensor:
        """Resize down by `factor_at(strength)`, then back up."""
        height, width = planes.shape[-2:]
        factor = self.factor_at(strength)
        small = (max(1, round(height * factor)), max(1, round(width * factor)))
        down = F.interpolate(planes, size=small, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


class Gaussian(Filter):
    """Gaussian blur (kornia) with a kernel sized from sigma, so it never degenerates into a no-op.

    At strength `s` the standard deviation is `sigma * s` pixels of the tensor it is applied to (latent
    pixels in latent space) and the kernel radius is `ceil(truncate * sigma * s)`, at least 1.

    Attributes:
        sigma: Standard deviation at strength 1, in pixels of the filtered tensor, in `[0.5, 1000]` (below 0.5
            a Gaussian barely filters). In latent space, `sigma=1` keeps roughly the detail that
            `Downsample(factor=0.4)` keeps. Default `1.0`.
        truncate: Kernel radius in standard deviations, in `(0, 10]`. Default `3.0`.
        border: How the plane is extended beyond its edges: `"reflect"`, `"replicate"`, `"circular"` or
            `"constant"` (zeros). A reflected kernel is clipped to the plane; with the other borders the radius
            at strength 1, `ceil(truncate * sigma)`, must not exceed the condition's smaller side (see
            [`check_size`][alg_guidance.filters.Gaussian.check_size]). Default `"reflect"`.

    Examples:
        >>> Gaussian(sigma=1.0).kernel_size(1.0)
        7
    """

    kind: Literal["gaussian"] = "gaussian"
    sigma: Annotated[float, Field(strict=True, ge=0.5, le=1000, allow_inf_nan=False)] = 1.0
    truncate: Annotated[float, Field(strict=True, gt=0, le=10, allow_inf_nan=False)] = 3.0
    border: Literal["reflect", "replicate", "circular", "constant"] = "reflect"

    def kernel_size(self, strength: float) -> int:
        """The odd kernel width used at `strength` before clipping to the plane size."""
        return 2 * max(1, math.ceil(self.truncate * self.sigma * strength)) + 1

    def check_size(self, height: int, width: int) -> None:
        """Check that the kernel fits a `height x width` plane, as every border but `"reflect"` needs.

        Raises:
            ConfigError: The radius at strength 1 exceeds `min(height, width)`; the message gives the largest
                sigma that fits.

        Examples:
            >>> Gaussian(sigma=25.0, border="circular").check_size(60, 104)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            alg_guidance.errors.ConfigError: gaussian filter: sigma=25.0 with truncate=3.0 needs a kernel radius ...
        """
        radius, side = self.kernel_size(1.0) // 2, min(height, width)
        if self.border != "reflect" and radius > side:
            raise ConfigError(
                f"gaussian filter: sigma={self.sigma} with truncate={self.truncate} needs a kernel radius of "
                f"{radius} pixels, but border={self.border!r} allows at most the smaller side of the "
                f"{height}x{width} condition, {side}: for this condition size use sigma <= "
                f"{side / self.truncate:.4g} (truncate * sigma <= {side}), or border='reflect'"
            )

    def filter_planes(self, planes: torch.Tensor, strength: float) -> torch.Tensor:
        """Blur each plane with a Gaussian of standard deviation `sigma * strength`."""
        from kornia.filters import gaussian_blur2d

        radius = self.kernel_size(strength) // 2
        height, width = planes.shape[-2:]
        self.check_size(height, width)
        if self.border == "reflect":  # reflection cannot reach further than the plane itself
            size = (2 * min(radius, height - 1) + 1, 2 * min(radius, width - 1) + 1)
        else:
            size = (2 * radius + 1, 2 * radius + 1)
        sigma = self.sigma * strength
        return gaussian_blur2d(planes, size, (sigma, sigma), border_type=self.border)


class Butterworth(Filter):
    """Butterworth low-pass in the frequency domain: a smooth cutoff without ringing.

    The gain at radial frequency `f` (a fraction of the Nyquist frequency) is
    `1 / sqrt(1 + (f / c) ** (2 * order))`, where the cutoff moves from Nyquist at strength 0 to `cutoff`
    at strength 1: `c = 1 - (1 - cutoff) * s`. Planes are mirror-padded by half their size before the
    transform so that their edges do not wrap around.

    Attributes:
        cutoff: The -3 dB frequency at strength 1, as a fraction of Nyquist, in `[0.001, 1)`; below 0.001, a
            plane smaller than 1000 pixels would keep only its mean. Default `0.4`.
        order: The filter order, an integer in `[1, 16]`; higher is a sharper transition. Default `2`.

    Examples:
        >>> Butterworth(cutoff=0.4).cutoff_at(1.0)
        0.4
    """

    kind: Literal["butterworth"] = "butterworth"
    cutoff: Annotated[float, Field(strict=True, ge=0.001, lt=1, allow_inf_nan=False)] = 0.4
    order: Annotated[int, Field(strict=True, ge=1, le=16)] = 2

    def cutoff_at(self, strength: float) -> float:
        """The cutoff, as a fraction of Nyquist, used at `strength`."""
        return 1.0 - (1.0 - self.cutoff) * strength

    def gain(self, height: int, width: int, strength: float, like: torch.Tensor) -> torch.Tensor:
        """The real gain over the `rfft2` frequencies of an `height x width` plane."""
        options = {"device": like.device, "dtype": like.dtype}
        rows = torch.fft.fftfreq(height, **options).square().unsqueeze(-1)
        columns = torch.fft.rfftfreq(width, **options).square()
        radius = (rows + columns).sqrt() / 0.5
        return (1 + (radius / self.cutoff_at(strength)).pow(2 * self.order)).rsqrt()

    def filter_planes(self, planes: torch.Tensor, strength: float) -> torch.Tensor:
        """Multiply the spectrum of each mirror-padded plane by the Butterworth gain."""
        height, width = planes.shape[-2:]
        pad_h, pad_w = height // 2, width // 2
        padded = F.pad(planes, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
        size = padded.shape[-2:]
        spectrum = torch.fft.rfft2(padded) * self.gain(*size, strength, padded)
        return torch.fft.irfft2(spectrum, s=size)[..., pad_h : pad_h + height, pad_w : pad_w + width]


BUILTIN_FILTERS = (Downsample, Gaussian, Butterworth)


@hookimpl
def alg_register_filters(register) -> None:
    """Register the builtin filters."""
    for filter_class in BUILTIN_FILTERS:
        register(filter_class)
