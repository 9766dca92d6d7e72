"""Wan 2.2 A14B in ComfyUI: the high- and low-noise experts patched independently, each with its own settings."""

from __future__ import annotations

import comfy_tiny as tiny
import torch
from test_wan import alg

STEPS = 4
HIGH = "filter: {kind: downsample, factor: 0.4}\nschedule: {kind: constant, value: 1.0}"
OFF = "schedule: {kind: constant, value: 0.0}"


def two_experts(high, low, positive, negative, latent):
    """KSamplerAdvanced twice, as the Wan 2.2 template wires it: the high-noise expert for steps 0-1 returning its
    leftover noise, then the low-noise expert for steps 2-3 adding none."""
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    middle = tiny.sample(high, positive, negative, latent, steps=STEPS, start_step=0, last_step=2, noise=noise)
    return tiny.sample(
        low, positive, negative, middle, steps=STEPS, start_step=2, last_step=STEPS, noise=torch.zeros_like(latent),
        force_full_denoise=True,
    )  # fmt: skip


def test_each_wan22_expert_follows_its_own_settings():
    positive, negative, latent = tiny.wan_conditioning()
    plain = two_experts(tiny.wan22_a14b_expert(0), tiny.wan22_a14b_expert(1), positive, negative, latent)
    high_only = two_experts(alg(tiny.wan22_a14b_expert(0), HIGH), tiny.wan22_a14b_expert(1), positive, negative, latent)
    high_and_low_off = two_experts(
        alg(tiny.wan22_a14b_expert(0), HIGH), alg(tiny.wan22_a14b_expert(1), OFF), positive, negative, latent
    )
    low_only = two_experts(tiny.wan22_a14b_expert(0), alg(tiny.wan22_a14b_expert(1), HIGH), positive, negative, latent)
    assert torch.equal(high_and_low_off, high_only)  # the low expert at strength 0 is untouched
    assert not torch.equal(high_only, plain) and not torch.equal(low_only, plain)
    assert not torch.equal(low_only, high_only)
