"""Wan 2.2 in ComfyUI: the A14B experts patched independently, and TI2V-5B's image kept in latent frame 0."""

from __future__ import annotations

import comfy.samplers
import comfy_tiny as tiny
import torch
from test_wan import CFG, alg, down_up, expected_strength, record_cfg

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
    plain = two_experts(tiny.wan21_i2v(0), tiny.wan21_i2v(1), positive, negative, latent)
    high_only = two_experts(alg(tiny.wan21_i2v(0), HIGH), tiny.wan21_i2v(1), positive, negative, latent)
    high_and_low_off = two_experts(
        alg(tiny.wan21_i2v(0), HIGH), alg(tiny.wan21_i2v(1), OFF), positive, negative, latent
    )
    low_only = two_experts(tiny.wan21_i2v(0), alg(tiny.wan21_i2v(1), HIGH), positive, negative, latent)
    assert torch.equal(high_and_low_off, high_only)  # the low expert at strength 0 is untouched
    assert not torch.equal(high_only, plain) and not torch.equal(low_only, plain)
    assert not torch.equal(low_only, high_only)


def test_wan22_ti2v_low_passes_the_image_kept_in_latent_frame_0():
    model = alg(tiny.wan22_ti2v(), "filter: {kind: downsample, factor: 0.4}\nschedule: {kind: step, end: 0.7}")

    def expected(args, sigmas):
        strength = expected_strength(float(args["sigma"][0]), sigmas)
        x, cond, uncond = args["input"], args["cond"], args["uncond"]
        evaluate = lambda conds, at: comfy.samplers.calc_cond_batch(  # noqa: E731
            args["model"], conds, at, args["sigma"], args["model_options"]
        )
        if not strength:
            c, u = evaluate([cond, uncond], x)
            return u + CFG * (c - u)
        mask = cond[0]["model_conds"]["denoise_mask"].cond
        kept = (mask == 0).expand_as(x)
        low_passed = torch.where(kept, down_up(x * kept, strength), x)
        (u_orig,) = evaluate([uncond], x)
        c_lp, u_lp = evaluate([cond, uncond], low_passed)
        return u_orig + CFG * (c_lp - u_lp)

    calls = record_cfg(model, expected)
    positive, negative, latent, mask = tiny.ti2v_latent()
    out = tiny.sample(model, positive, negative, latent, noise_mask=mask)
    assert [strength for *_, strength in calls] == [1.0, 1.0, 1.0, 0.0]
    for index, (got, want, _) in enumerate(calls):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"step {index}")
    torch.testing.assert_close(out[:, :, :1], latent[:, :, :1])  # the sampler keeps the image frame
