"""ALG on Wan VACE and Wan Animate: sequential CFG, the condition in `control_hidden_states` or a frame's channels.

The condition's place is written out here independently of the adapters: VACE's 16 + 16 latent channels of
`control_hidden_states` (every frame: the reference image, then the video with the image as its first frame),
Wan Animate's 16 reference-latent channels of the first latent frame of `hidden_states`.
"""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from tests.support import tiny_wanplus
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
SCALES = {"transformer": 5.0, "transformer_2": 3.0}


def vace_condition(call, low_pass):
    """VACE: channels 0:32 of `control_hidden_states` are the inactive and reactive latents; 32:96 the mask."""
    control = call["control_hidden_states"]
    return {"control_hidden_states": torch.cat([low_pass(control[:, :32]), control[:, 32:]], dim=1)}


def animate_condition(call, low_pass):
    """Wan Animate: channels 20:36 of latent frame 0 hold the character image's latent (16 latent + 4 mask first)."""
    hidden = call["hidden_states"]
    frame = torch.cat([hidden[:, :20, :1], low_pass(hidden[:, 20:, :1])], dim=1)
    return {"hidden_states": torch.cat([frame, hidden[:, :, 1:]], dim=2)}


FAMILIES = {
    "wan-vace": (tiny_wanplus.vace, tiny_wanplus.vace_call, vace_condition, ("transformer",)),
    "wan-vace-two-experts": (
        tiny_wanplus.vace_two_experts,
        tiny_wanplus.vace_two_experts_call,
        vace_condition,
        ("transformer", "transformer_2"),
    ),
    "wan-animate": (tiny_wanplus.animate, tiny_wanplus.animate_call, animate_condition, ("transformer",)),
}


def expected_predictions(record, references, low_passed, strengths, cfg=True):
    """ALG from untouched copies of the denoisers: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅)), or D(LP(I), c)."""
    per_step = 2 if cfg else 1
    expected = []
    for step, strength in enumerate(strengths):
        cond, *uncond = record.calls[per_step * step : per_step * (step + 1)]
        model = references[cond["denoiser"]]
        low_pass = lambda c, s=strength: down_up(c, FACTOR, s)  # noqa: E731
        c_lp = model(**model_inputs(cond, **low_passed(cond, low_pass)))[0]
        if not cfg:
            expected.append(c_lp)
            continue
        u_orig = model(**model_inputs(uncond[0]))[0]
        u_lp = model(**model_inputs(uncond[0], **low_passed(uncond[0], low_pass)))[0]
        expected.append(u_orig + SCALES[cond["denoiser"]] * (c_lp - u_lp))
    return expected


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula(family, batch_branches):
    make, call, condition, denoisers = FAMILIES[family]
    pipe = make()
    references = {name: copy.deepcopy(getattr(pipe, name)) for name in denoisers}
    with (
        alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle,
        recording(pipe, denoisers) as record,
    ):
        pipe(**call())
    assert handle.adapter.name == family.removesuffix("-two-experts")
    assert {c["denoiser"] for c in record.calls} == set(denoisers)
    assert record.evaluations == ([1, 2] if batch_branches else [1, 1, 1]) * 3 + [1, 1]
    expected = expected_predictions(record, references, condition, STRENGTHS)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("family", ["wan-vace", "wan-animate"])
def test_without_cfg_the_condition_is_replaced_in_one_evaluation(family):
    """Wan Animate's own default is guidance_scale 1: one low-passed evaluation per filtered step."""
    make, call, condition, _ = FAMILIES[family]
    pipe = make()
    references = {"transformer": copy.deepcopy(pipe.transformer)}
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        pipe(**call(guidance_scale=1.0))
    assert record.evaluations == [1, 1, 1, 1]
    expected = expected_predictions(record, references, condition, STRENGTHS, cfg=False)
    for got, want in zip(record.predictions, expected, strict=True):
        assert_prediction(got, want)


def test_vace_the_low_pass_leaves_the_mask_channels_and_filters_the_image_frames():
    """The reference frame and the first video frame change under the filter; the mask channels never do."""
    pipe = tiny_wanplus.vace()
    seen = []  # what every evaluation's VACE patch embedding receives
    pipe.transformer.vace_patch_embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    with alg.enable(pipe, CONFIG.merge({"batch_branches": False})):
        pipe(**tiny_wanplus.vace_call())
    low_passed, original = seen[0], seen[1]  # step 0: c_lp, then u_orig, then u_lp
    assert torch.equal(seen[2], low_passed)
    assert torch.equal(low_passed[:, 32:], original[:, 32:])
    for frame in (0, 1):  # the reference image's latent frame, the image's latent frame
        assert not torch.equal(low_passed[:, :16, frame], original[:, :16, frame])


def test_animate_guides_every_segment_of_a_long_video():
    """Two segments (17 pose frames, 9 per segment): each samples its own 4 steps, the first three filtered."""
    pipe = tiny_wanplus.animate()
    reference = {"transformer": copy.deepcopy(pipe.transformer)}
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        pipe(**tiny_wanplus.animate_call(frames=17))
    assert record.evaluations == ([1, 2] * 3 + [1, 1]) * 2
    expected = expected_predictions(record, reference, animate_condition, STRENGTHS * 2)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def pixel_config():
    return CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})


PIXEL_STRENGTHS = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths


def test_vace_pixel_space_runs_prepare_video_latents_on_the_low_passed_video_and_references():
    pipe = tiny_wanplus.vace()
    reference = {"transformer": copy.deepcopy(pipe.transformer)}
    with alg.enable(pipe, pixel_config()), recording(pipe) as record:
        pipe(**tiny_wanplus.vace_call())
    video, mask = tiny_wanplus.i2v_video(0)
    size, frames = tiny_wanplus.SIZE, tiny_wanplus.FRAMES
    pixels, masks, references = pipe.preprocess_conditions(
        video, mask, [tiny_wanplus.image(1, size)], 1, size, size, frames, torch.float32, "cpu"
    )

    def pixel_condition(call, low_pass):
        low_passed = [[low_pass(image) for image in images] for images in references]
        latents = pipe.prepare_video_latents(low_pass(pixels), masks, low_passed, None, "cpu")
        return {"control_hidden_states": torch.cat([latents, call["control_hidden_states"][:, 32:]], dim=1)}

    expected = expected_predictions(record, reference, pixel_condition, PIXEL_STRENGTHS)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def test_animate_pixel_space_encodes_the_low_passed_character_image_once_per_strength():
    pipe = tiny_wanplus.animate()
    reference = {"transformer": copy.deepcopy(pipe.transformer)}
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    with alg.enable(pipe, pixel_config()), recording(pipe) as record:
        pipe(**tiny_wanplus.animate_call())
    assert len(encoded) == 3 + 2  # the pipeline's reference, pose and segment encodes, then one per strength
    size = tiny_wanplus.SIZE
    pixels = pipe.vae_image_processor.preprocess(tiny_wanplus.image(0, size), height=size, width=size).float()

    def pixel_condition(call, low_pass):
        latent = pipe.prepare_reference_image_latents(low_pass(pixels), 1, device="cpu")[:, 4:]
        return animate_condition(call, lambda _: latent)

    strengths = PIXEL_STRENGTHS
    expected = []
    for step, strength in enumerate(strengths):
        if strength == 0.0:
            expected.append(expected_predictions(record, reference, animate_condition, [0.0] * (step + 1))[step])
            continue
        cond, uncond = record.calls[2 * step : 2 * step + 2]
        model = reference["transformer"]
        low_pass = lambda c, s=strength: down_up(c, FACTOR, s)  # noqa: E731
        c_lp = model(**model_inputs(cond, **pixel_condition(cond, low_pass)))[0]
        u_orig = model(**model_inputs(uncond))[0]
        u_lp = model(**model_inputs(uncond, **pixel_condition(uncond, low_pass)))[0]
        expected.append(u_orig + 5.0 * (c_lp - u_lp))
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")
