"""ALG on Sana-Video I2V (batched CFG) and Kandinsky 5 I2V (sequential CFG by call order).

Both keep the image latent in latent frame 0 and step frames `1:` only. The expected predictions are computed
by calling an untouched copy of the transformer with the condition written out independently: frame 0 of
`[B, C, F, H, W]` for Sana, the first 4 channels of frame 0 of channels-last `[B, F, H, W, 9]` for Kandinsky.
"""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_sana_kandinsky as tiny
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_sana_kandinsky import FAMILIES, K5_LATENT_CHANNELS

FACTOR = 0.4
SCALE = 5.0
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
SANA_BATCHED = ("hidden_states", "encoder_hidden_states", "encoder_attention_mask", "timestep")


def sana_frame_0(hidden, low_pass):
    """Sana: latent frame 0 of [B, C, F, H, W] is the image latent."""
    return torch.cat([low_pass(hidden[:, :, :1]), hidden[:, :, 1:]], dim=2)


def kandinsky_frame_0(hidden, low_pass):
    """Kandinsky 5: channels 0:4 of frame 0 of [B, F, H, W, 9] are the image latent (then 4 zero + 1 mask channels)."""
    c = K5_LATENT_CHANNELS
    latent = hidden[:, :1, :, :, :c].permute(0, 1, 4, 2, 3)  # [B, 1, C, H, W]: height and width last
    filtered = low_pass(latent).permute(0, 1, 3, 4, 2)
    frame = torch.cat([filtered, hidden[:, :1, :, :, c:]], dim=-1)
    return torch.cat([frame, hidden[:, 1:]], dim=1)


def latent_low_pass(strength):
    return lambda condition: down_up(condition, FACTOR, strength) if strength else condition


def sana_expected(record, reference, strengths, low_pass=latent_low_pass, cfg=True):
    """Per step: one call on [uncond, cond]; the scheduler gets (u_orig + w (c_lp - u_lp))[:, :, 1:]."""
    expected = []
    for call, strength in zip(record.calls, strengths, strict=True):
        low_passed = sana_frame_0(call["hidden_states"], low_pass(strength))
        if not cfg:
            expected.append(reference(**model_inputs(call, hidden_states=low_passed))[0][:, :, 1:])
            continue
        uncond = {k: v[:1] if k in SANA_BATCHED else v for k, v in call.items()}
        cond = {k: v[1:] if k in SANA_BATCHED else v for k, v in call.items()}
        u_orig = reference(**model_inputs(uncond))[0]
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed[1:]))[0]
        u_lp = reference(**model_inputs(uncond, hidden_states=low_passed[:1]))[0]
        expected.append((u_orig + SCALE * (c_lp - u_lp))[:, :, 1:])
    return expected


def kandinsky_expected(record, reference, strengths, cfg=True):
    """Per step: the prompt call, then the negative one; the scheduler gets (u_orig + w (c_lp - u_lp))[:, 1:]."""
    per_step = 2 if cfg else 1
    expected = []
    for step, strength in enumerate(strengths):
        cond, *uncond = record.calls[per_step * step : per_step * (step + 1)]
        low_passed = kandinsky_frame_0(cond["hidden_states"], latent_low_pass(strength))
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
        if not cfg:
            expected.append(c_lp[:, 1:])
            continue
        u_orig = reference(**model_inputs(uncond[0]))[0]
        u_lp = reference(**model_inputs(uncond[0], hidden_states=low_passed))[0]
        expected.append((u_orig + SCALE * (c_lp - u_lp))[:, 1:])
    return expected


def guided(family, config, **overrides):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, config) as handle, recording(pipe, counted=FAMILIES[family].counted) as record:
        pipe(**FAMILIES[family].call(**overrides))
    assert handle.adapter.name == family
    return pipe, reference, record


def assert_predictions(record, expected, rtol=1e-5):
    assert len(record.predictions) == len(expected)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, rtol=rtol, message=f"step {step}")


@pytest.mark.parametrize("batch_branches", [True, False])
def test_sana_every_step_follows_the_alg_formula(batch_branches):
    _, reference, record = guided("sana-video-i2v", CONFIG.merge({"batch_branches": batch_branches}))
    assert record.evaluations == ([3] if batch_branches else [2, 1]) * 3 + [2]
    assert_predictions(record, sana_expected(record, reference, STRENGTHS))


@pytest.mark.parametrize("batch_branches", [True, False])
def test_kandinsky5_every_step_follows_the_alg_formula(batch_branches):
    _, reference, record = guided("kandinsky5-i2v", CONFIG.merge({"batch_branches": batch_branches}))
    assert record.evaluations == ([1, 2] if batch_branches else [1, 1, 1]) * 3 + [1, 1]
    # Evaluated one by one, as the reference is, the branches agree to float32 rounding (about 1e-7); batched as
    # [u_orig, u_lp], the tiny model's random modulations amplify the batch's different rounding to about 1e-5.
    assert_predictions(record, kandinsky_expected(record, reference, STRENGTHS), rtol=1e-4 if batch_branches else 1e-6)


def test_sana_without_cfg_low_passes_the_one_evaluation():
    _, reference, record = guided("sana-video-i2v", CONFIG, guidance_scale=1.0)
    assert record.evaluations == [1] * 4
    assert_predictions(record, sana_expected(record, reference, STRENGTHS, cfg=False))


def test_kandinsky5_without_cfg_low_passes_the_one_evaluation():
    _, reference, record = guided("kandinsky5-i2v", CONFIG, guidance_scale=1.0)
    assert record.evaluations == [1] * 4
    assert_predictions(record, kandinsky_expected(record, reference, STRENGTHS, cfg=False))


def test_sana_keeps_the_original_image_latent_in_frame_0_of_its_output():
    """ALG low-passes frame 0 of the transformer's input only; the pipeline keeps the image latent in its latents."""
    untouched = FAMILIES["sana-video-i2v"].run(FAMILIES["sana-video-i2v"].make())
    pipe = FAMILIES["sana-video-i2v"].make()
    with alg.enable(pipe, CONFIG):
        frames = FAMILIES["sana-video-i2v"].run(pipe)
    assert torch.equal(frames[:, :, :1], untouched[:, :, :1])
    assert not torch.equal(frames[:, :, 1:], untouched[:, :, 1:])


def test_sana_pixel_space_encodes_the_low_passed_image_once_per_strength():
    pipe = FAMILIES["sana-video-i2v"].make()
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, config), recording(pipe) as record:
        pipe(**FAMILIES["sana-video-i2v"].call())
    del pipe.vae.encode
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength (1 and 1/3)

    # Independently: the preprocessed image, low-passed, through the VAE's mode and the Wan latent normalization.
    pixels = pipe.video_processor.preprocess(tiny.image(0), height=64, width=64)
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)

    def pixel_low_pass(strength):
        if not strength:
            return lambda condition: condition
        latent = (pipe.vae.encode(down_up(pixels, FACTOR, strength).unsqueeze(2)).latent_dist.mode() - mean) / std
        return lambda condition: latent.expand_as(condition)

    assert_predictions(record, sana_expected(record, reference, [1.0, 1 / 3, 0.0, 0.0], pixel_low_pass))


def test_kandinsky5_refuses_pixel_space():
    pipe = FAMILIES["kandinsky5-i2v"].make()
    with pytest.raises(ALGError, match="latent space only"), alg.enable(pipe, CONFIG.merge({"space": "pixel"})):
        pipe(**FAMILIES["kandinsky5-i2v"].call())


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_preset_is_the_paper_one(family):
    with alg.enable(FAMILIES[family].make()) as handle:
        assert handle.config == alg.get_preset("paper").config
