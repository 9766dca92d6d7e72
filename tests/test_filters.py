from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from scipy import ndimage

import alg_guidance as alg
from alg_guidance.errors import ConfigError
from alg_guidance.filters import Butterworth, Downsample, Gaussian
from alg_guidance.testing import FILTER_CHECKS

# Every filter the default registry knows (builtins and the installed example plugin) at its defaults,
# plus builtins at other settings.
FILTERS = [cls() for cls in alg.default_registry().filters().values()] + [
    Downsample(factor=0.1),
    Gaussian(sigma=2.5, border="replicate"),
    Gaussian(sigma=0.6, truncate=2.0, border="circular"),
    Butterworth(cutoff=0.15, order=6),
]


@pytest.mark.parametrize("check", FILTER_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("filter_", FILTERS, ids=repr)
def test_every_filter_passes_the_contract(filter_, check):
    check(filter_)


def test_the_contract_covers_every_registered_filter():
    assert {f.kind for f in FILTERS} == set(alg.default_registry().filters())
    assert "median" in alg.default_registry().filters()


def reference_down_up(latent: torch.Tensor, factor: float, strength: float) -> torch.Tensor:
    """The reference's down-up, written from the paper: 5-D latents fold their frames into the batch."""
    resize = 1.0 - (1.0 - factor) * strength
    batch, channels, frames, height, width = latent.shape
    folded = latent.view(batch * frames, channels, height, width)
    size = (max(1, round(height * resize)), max(1, round(width * resize)))
    down = F.interpolate(folded, size=size, mode="bilinear", align_corners=False, antialias=True)
    up = F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return up.view(batch, channels, frames, height, width)


@pytest.mark.parametrize("shape", [(1, 20, 21, 60, 104), (2, 16, 3, 30, 52), (1, 4, 2, 7, 11)])
@pytest.mark.parametrize("factor", [0.4, 0.25, 0.625])
@pytest.mark.parametrize("strength", [1.0, 0.5, 0.1])
def test_downsample_equals_the_reference_down_up(shape, factor, strength):
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    expected = reference_down_up(latent, factor, strength)
    assert torch.equal(Downsample(factor=factor)(latent, strength), expected)


def test_downsample_sizes_follow_the_rounded_factor():
    planes = torch.randn(1, 1, 60, 104)
    filter_ = Downsample(factor=0.4)
    assert filter_.factor_at(1.0) == 0.4 and filter_.factor_at(0.0) == 1.0
    # 60 x 104 at 0.4 -> 24 x 42 (41.6 rounds up): the result is exactly a bilinear upsampling of that grid
    small = F.interpolate(planes, size=(24, 42), mode="bilinear", align_corners=False, antialias=True)
    expected = F.interpolate(small, size=(60, 104), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(filter_(planes, 1.0), expected)


@pytest.mark.parametrize(
    ("sigma", "strength", "border", "mode"),
    [
        (1.5, 1.0, "reflect", "mirror"),
        (1.5, 0.5, "reflect", "mirror"),
        (0.7, 1.0, "replicate", "nearest"),
        (2.0, 0.8, "circular", "wrap"),
    ],
)
def test_gaussian_equals_scipy_gaussian_filter(sigma, strength, border, mode):
    image = torch.randn(2, 1, 30, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    filtered = Gaussian(sigma=sigma, border=border)(image, strength)
    effective = sigma * strength
    radius = math.ceil(3.0 * effective)
    for plane in range(2):
        expected = ndimage.gaussian_filter(image[plane, 0].numpy(), effective, mode=mode, radius=radius)
        np.testing.assert_allclose(filtered[plane, 0].numpy(), expected, atol=1e-12)


def test_gaussian_kernel_grows_with_sigma_and_is_never_a_single_pixel():
    assert Gaussian(sigma=0.5).kernel_size(0.1) == 3
    assert Gaussian(sigma=1.0).kernel_size(1.0) == 7
    assert Gaussian(sigma=1.0).kernel_size(0.5) == 5
    assert Gaussian(sigma=4.0, truncate=2.0).kernel_size(1.0) == 17
    # The reference's pixel-space default (sigma 15 px ~ 2 latent px) visibly blurs a latent-sized tensor.
    latent = torch.randn(1, 16, 60, 104)
    assert (Gaussian(sigma=15 / 8)(latent, 1.0) - latent).abs().mean() > 0.5


def test_gaussian_on_planes_smaller_than_its_kernel():
    tiny = torch.randn(3, 1, 2, 3)
    assert Gaussian(sigma=3.0)(tiny, 1.0).shape == tiny.shape
    single_row = torch.randn(1, 1, 1, 9)
    row = Gaussian(sigma=1.0)(single_row, 1.0)
    assert torch.isfinite(row).all() and row.shape == single_row.shape


@pytest.mark.parametrize("frequency", [0.05, 0.12, 0.2, 0.3])
def test_butterworth_attenuates_a_sinusoid_by_its_gain(frequency):
    cutoff, order = 0.4, 2
    columns = torch.arange(96, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * frequency * columns).expand(1, 1, 64, 96)
    filtered = Butterworth(cutoff=cutoff, order=order)(wave, 1.0)
    gain = 1 / math.sqrt(1 + ((frequency / 0.5) / cutoff) ** (2 * order))
    interior = (slice(16, 48), slice(24, 72))
    np.testing.assert_allclose(filtered[0, 0][interior].numpy(), gain * wave[0, 0][interior].numpy(), atol=2e-4)


def test_butterworth_gain_is_one_at_dc_and_half_power_at_the_cutoff():
    filter_ = Butterworth(cutoff=0.5, order=3)
    gain = filter_.gain(8, 8, 1.0, torch.zeros((), dtype=torch.float64))
    assert gain[0, 0] == 1.0
    # row 0, column 2 of an 8-point rfft is 0.25 cycles/pixel = half of Nyquist = the cutoff
    assert gain[0, 2].item() == pytest.approx(1 / math.sqrt(2))
    assert filter_.cutoff_at(0.5) == 0.75


@pytest.mark.parametrize(
    ("filter_class", "field", "value"),
    [
        (Downsample, "factor", 0.0),
        (Downsample, "factor", 1.0),
        (Downsample, "factor", "0.4"),
        (Gaussian, "sigma", -1.0),
        (Gaussian, "sigma", 0.2),
        (Gaussian, "truncate", 0.0),
        (Gaussian, "border", "mirror"),
        (Butterworth, "cutoff", 1.2),
        (Butterworth, "order", 0),
        (Butterworth, "order", 2.5),
    ],
)
def test_invalid_parameters_name_the_field(filter_class, field, value):
    with pytest.raises(ValidationError) as caught:
        filter_class(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("filter_class", "field", "value", "message"),
    [
        (Butterworth, "cutoff", 1e-17, "greater than or equal to 0.001"),
        (Gaussian, "sigma", 1e308, "less than or equal to 1000"),
        (Gaussian, "sigma", 1e5, "less than or equal to 1000"),
        (Gaussian, "truncate", 1e5, "less than or equal to 10"),
    ],
)
def test_parameters_that_cannot_run_are_refused_when_the_filter_is_made(filter_class, field, value, message):
    with pytest.raises(ValidationError, match=message) as caught:
        filter_class(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    "filter_",
    [Butterworth(cutoff=0.001, order=16), Gaussian(sigma=1000.0, truncate=10.0), Downsample(factor=1e-300)],
    ids=repr,
)
def test_the_most_extreme_accepted_parameters_run_and_stay_finite(filter_):
    latent = torch.randn(1, 4, 2, 60, 104)
    for strength in (1e-6, 0.5, 1.0):
        out = filter_(latent, strength)
        assert out.shape == latent.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("border", ["circular", "replicate", "constant"])
def test_a_gaussian_kernel_wider_than_the_condition_is_refused_naming_the_limit(border):
    latent = torch.randn(1, 16, 60, 104)
    message = (
        rf"gaussian filter: sigma=25.0 with truncate=3.0 needs a kernel radius of 75 pixels, but border='{border}' "
        r"allows at most the smaller side of the 60x104 condition, 60: for this condition size use sigma <= 20 "
        r"\(truncate \* sigma <= 60\), or border='reflect'"
    )
    with pytest.raises(ConfigError, match=message):
        Gaussian(sigma=25.0, border=border)(latent, 0.5)
    assert Gaussian(sigma=20.0, border=border)(latent, 1.0).shape == latent.shape  # radius 60: the widest that fits
    assert Gaussian(sigma=25.0)(latent, 1.0).shape == latent.shape  # a reflected kernel is clipped instead
