"""Models whose image condition is the latent frame the denoise mask keeps: Wan 2.2 TI2V-5B and LTX-Video."""

from __future__ import annotations

import comfy.samplers
import comfy_tiny as tiny
import pytest
import torch
from test_wan import CFG, alg, down_up, expected_strength, record_cfg

MODELS = {"wan2.2-ti2v": (tiny.wan22_ti2v, tiny.ti2v_latent), "ltx-video": (tiny.ltxv, tiny.ltx_latent)}


def alg_on_the_kept_frame(args, sigmas):
    """ALG with the kept part of the latent low-passed by hand, the model called through ComfyUI's calc_cond_batch."""
    strength = expected_strength(float(args["sigma"][0]), sigmas)
    x, cond, uncond = args["input"], args["cond"], args["uncond"]

    def evaluate(conds, at):
        return comfy.samplers.calc_cond_batch(args["model"], conds, at, args["sigma"], args["model_options"])

    if not strength:
        c, u = evaluate([cond, uncond], x)
        return u + CFG * (c - u)
    mask = cond[0]["model_conds"]["denoise_mask"].cond
    kept = (mask == 0).expand_as(x)
    low_passed = torch.where(kept, down_up(x * kept, strength), x)
    (u_orig,) = evaluate([uncond], x)
    c_lp, u_lp = evaluate([cond, uncond], low_passed)
    return u_orig + CFG * (c_lp - u_lp)


@pytest.mark.parametrize("name", MODELS)
def test_the_image_kept_in_latent_frame_0_is_low_passed_at_every_filtered_step(name):
    make, conditioning = MODELS[name]
    model = alg(make(), "filter: {kind: downsample, factor: 0.4}\nschedule: {kind: step, end: 0.7}")
    calls = record_cfg(model, alg_on_the_kept_frame)
    positive, negative, latent, mask = conditioning()
    out = tiny.sample(model, positive, negative, latent, noise_mask=mask)
    assert [strength for *_, strength in calls] == [1.0, 1.0, 1.0, 0.0]
    for index, (got, want, _) in enumerate(calls):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"step {index}")
    torch.testing.assert_close(out[:, :, :1], latent[:, :, :1])  # the sampler keeps the image frame


@pytest.mark.parametrize("name", MODELS)
def test_at_zero_strength_sampling_is_bit_identical(name):
    make, conditioning = MODELS[name]
    positive, negative, latent, mask = conditioning()
    plain = tiny.sample(make(), positive, negative, latent, noise_mask=mask)
    off = alg(make(), "schedule: {kind: constant, value: 0.0}")
    assert torch.equal(tiny.sample(off, positive, negative, latent, noise_mask=mask), plain)
