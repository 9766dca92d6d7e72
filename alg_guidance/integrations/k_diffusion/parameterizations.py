r"""Wrappers that turn diffusers-style models into k-diffusion denoisers.

A k-diffusion denoiser is called as `denoiser(x, sigma, **inputs)` and returns its estimate of the clean sample,
where `x = x0 + sigma * noise` (the variance-exploding convention of Karras et al. 2022) and `sigma` holds one
value per sample. Diffusers models are trained on other conventions; each wrapper here converts `x` and `sigma`
into the model's input and timestep, calls `model(x_in, timestep, **inputs)` and turns the raw output into the
clean estimate:

- [`FlowMatchingDenoiser`][alg_guidance.integrations.k_diffusion.parameterizations.FlowMatchingDenoiser]: models
  trained on \(x_t = (1 - t) x_0 + t \epsilon\) that predict the velocity \(v = \epsilon - x_0\);
- [`DiscreteVDenoiser`][alg_guidance.integrations.k_diffusion.parameterizations.DiscreteVDenoiser]: models trained on
  a discrete DDPM schedule (`alphas_cumprod`) that predict \(v\);
- [`DiscreteEpsDenoiser`][alg_guidance.integrations.k_diffusion.parameterizations.DiscreteEpsDenoiser]: the same,
  predicting the noise \(\epsilon\).

Flow-matching models (Wan, HunyuanVideo, LTX-Video) relate to k-diffusion's sigma by \(\sigma = t / (1 - t)\):
dividing \(x = x_0 + \sigma \epsilon\) by \(1 + \sigma\) gives exactly \(x_t\), so the mapping is exact for every
\(t < 1\), and k-diffusion's Euler sampler takes exactly the steps of the flow-matching Euler scheduler. The pure
noise of \(t = 1\) is an infinite sigma: start a schedule just below it. Discrete models (CogVideoX predicts v,
many others epsilon) have \(\sigma = \sqrt{(1 - \bar\alpha) / \bar\alpha}\) at each training timestep; a sigma
between two of them gets a fractional timestep, interpolated in \(\log \sigma\).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...errors import ALGError

Model = Callable[..., torch.Tensor]
"""A diffusers-style model, called as `model(x_in, timestep, **inputs)`; it returns its raw prediction."""

MIN_ALPHA_CUMPROD = 2.0**-24
"""The smallest `alphas_cumprod` a discrete wrapper uses.

Zero-terminal-SNR schedules (CogVideoX's) end at `alphas_cumprod = 0`, an infinite sigma; raised to `2**-24`, the
last timestep has sigma 4096, and a sample drawn at that sigma is pure noise to within 1e-7 after input scaling.
"""


def per_sample(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`sigma` (one value per sample, or one for all) shaped to broadcast against `x`."""
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class FlowMatchingDenoiser(nn.Module):
    r"""A flow-matching velocity model as a k-diffusion denoiser.

    With \(t = \sigma / (1 + \sigma)\): the model sees \(x_t = x / (1 + \sigma)\) and the timestep
    `t * timestep_scale`, and the clean estimate is \(x_t - t v\).

    Args:
        model: `model(x_t, timestep, **inputs) -> v`, the velocity \(\epsilon - x_0\).
        timestep_scale: The model's timestep at \(t = 1\): diffusers' flow-matching transformers take
            `t * num_train_timesteps`, 1000.

    Examples:
        >>> denoiser = FlowMatchingDenoiser(lambda x_t, timestep: torch.zeros_like(x_t))
        >>> denoiser(torch.full((1, 2), 4.0), torch.tensor([1.0]))  # t = 0.5, x_t = 2, v = 0
        tensor([[2., 2.]])
    """

    def __init__(self, model: Model, timestep_scale: float = 1000.0) -> None:
        super().__init__()
        self.model = model
        self.timestep_scale = timestep_scale

    @staticmethod
    def sigma_of_time(t: torch.Tensor) -> torch.Tensor:
        """k-diffusion's sigma `t / (1 - t)` of flow-matching times `t < 1`."""
        return t / (1 - t)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **inputs) -> torch.Tensor:
        """The clean estimate of `x` at noise level `sigma`."""
        t = sigma / (1 + sigma)
        x_t = x / per_sample(1 + sigma, x)
        velocity = self.model(x_t, t * self.timestep_scale, **inputs)
        return x_t - per_sample(t, x) * velocity


class DiscreteTimesteps(nn.Module):
    """The sigmas of a model trained on a discrete DDPM schedule, and the (fractional) timestep of any sigma.

    Base class of [`DiscreteVDenoiser`][alg_guidance.integrations.k_diffusion.parameterizations.DiscreteVDenoiser]
    and [`DiscreteEpsDenoiser`][alg_guidance.integrations.k_diffusion.parameterizations.DiscreteEpsDenoiser].

    Args:
        model: `model(x_in, timestep, **inputs)`, the raw network.
        alphas_cumprod: The training schedule's cumulative alphas, decreasing (a diffusers scheduler's
            `alphas_cumprod`); values below `MIN_ALPHA_CUMPROD` are raised to it.
        quantize: Round timesteps to the nearest training timestep instead of interpolating between two.

    Raises:
        ALGError: `alphas_cumprod` is not a decreasing sequence in `(0, 1]` (after raising the zeros).
    """

    def __init__(self, model: Model, alphas_cumprod: torch.Tensor | Sequence[float], quantize: bool = False) -> None:
        super().__init__()
        alphas = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1).clamp(min=MIN_ALPHA_CUMPROD)
        if len(alphas) < 2 or alphas.max() > 1 or not bool((alphas[1:] < alphas[:-1]).all()):
            raise ALGError("alphas_cumprod must decrease strictly, from at most 1 to above 0, over two or more steps")
        sigmas = ((1 - alphas) / alphas).sqrt()
        self.model = model
        self.quantize = quantize
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.register_buffer("log_sigmas", sigmas.log().float(), persistent=False)

    @property
    def sigma_min(self) -> float:
        """The sigma of the first training timestep."""
        return self.sigmas[0].item()

    @property
    def sigma_max(self) -> float:
        """The sigma of the last training timestep."""
        return self.sigmas[-1].item()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The training timestep of each sigma: fractional between two timesteps, or the nearest with `quantize`.

        Sigmas outside the table get its first or last timestep.
        """
        log_sigma = sigma.log().to(self.log_sigmas.dtype).reshape(-1)
        upper = torch.searchsorted(self.log_sigmas, log_sigma).clamp(1, len(self.log_sigmas) - 1)
        lower = upper - 1
        low, high = self.log_sigmas[lower], self.log_sigmas[upper]
        fraction = ((log_sigma - low) / (high - low)).clamp(0, 1)
        if self.quantize:
            fraction = fraction.round()
        return (lower + fraction).reshape(sigma.shape)

    def sigma_at(self, timesteps: torch.Tensor) -> torch.Tensor:
        """The sigma of each (possibly fractional) training timestep, interpolated in log-sigma."""
        timesteps = torch.as_tensor(timesteps, device=self.sigmas.device).float()
        lower = timesteps.floor().long().clamp(0, len(self.sigmas) - 1)
        upper = (lower + 1).clamp(max=len(self.sigmas) - 1)
        fraction = timesteps - lower
        return ((1 - fraction) * self.log_sigmas[lower] + fraction * self.log_sigmas[upper]).exp()

    def schedule(self, timesteps: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """A k-diffusion sigma schedule through `timesteps` (decreasing, as a diffusers scheduler lists them), then 0.

        Examples:
            >>> model = DiscreteEpsDenoiser(lambda x, t: x, torch.linspace(0.99, 0.01, 1000))
            >>> model.schedule([999, 499, 0]).shape
            torch.Size([4])
        """
        sigmas = self.sigma_at(torch.as_tensor(timesteps))
        return torch.cat([sigmas, sigmas.new_zeros(1)])


class DiscreteVDenoiser(DiscreteTimesteps):
    r"""A v-prediction model on a discrete DDPM schedule (CogVideoX) as a k-diffusion denoiser.

    The model sees \(x / \sqrt{1 + \sigma^2}\) (the variance-preserving sample) at the timestep of \(\sigma\) and
    predicts \(v = \alpha \epsilon - \sigma_{VP} x_0\); the clean estimate is
    \((x - \sigma \sqrt{1 + \sigma^2}\, v) / (1 + \sigma^2)\).

    Args:
        model: `model(x_in, timestep, **inputs) -> v`.
        alphas_cumprod: The training schedule's cumulative alphas.
        quantize: Round timesteps to the nearest training timestep.
    """

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **inputs) -> torch.Tensor:
        """The clean estimate of `x` at noise level `sigma`."""
        s = per_sample(sigma, x)
        scale = (1 + s**2).rsqrt()
        v = self.model(x * scale, self.timestep(sigma), **inputs)
        return x * scale**2 - v * s * scale


class DiscreteEpsDenoiser(DiscreteTimesteps):
    r"""An epsilon-prediction model on a discrete DDPM schedule as a k-diffusion denoiser.

    The model sees \(x / \sqrt{1 + \sigma^2}\) at the timestep of \(\sigma\) and predicts the noise
    \(\epsilon\); the clean estimate is \(x - \sigma \epsilon\).

    Args:
        model: `model(x_in, timestep, **inputs) -> epsilon`.
        alphas_cumprod: The training schedule's cumulative alphas.
        quantize: Round timesteps to the nearest training timestep.
    """

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **inputs) -> torch.Tensor:
        """The clean estimate of `x` at noise level `sigma`."""
        s = per_sample(sigma, x)
        eps = self.model(x * (1 + s**2).rsqrt(), self.timestep(sigma), **inputs)
        return x - s * eps
