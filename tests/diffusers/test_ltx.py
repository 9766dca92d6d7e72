"""ALG on LTX-Video (`LTXImageToVideoPipeline`, `LTXConditionPipeline`): batched CFG on packed tokens."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_ltx
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_ltx import CFG, LATENT_CHANNELS, LATENT_FRAMES, LATENT_SIZE, NUM_FRAMES, SIZE

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})
FRAME_TOKENS = LATENT_SIZE * LATENT_SIZE
FAMILIES = tiny_ltx.FAMILIES
SINGLE_IMAGE = ["ltx-video", "ltx-video-condition"]


class Image(NamedTuple):
    """One image condition of a run: the frame it conditions, where its tokens start, its clean latent."""

    frame_index: int
    offset: int
    clean: torch.Tensor


def to_planes(tokens: torch.Tensor) -> torch.Tensor:
    """One packed latent frame `[B, H * W, C]` as `[B, C, H, W]`."""
    return tokens.reshape(tokens.shape[0], LATENT_SIZE, LATENT_SIZE, -1).permute(0, 3, 1, 2)


def to_tokens(planes: torch.Tensor) -> torch.Tensor:
    """`[B, C, H, W]` packed back into `[B, H * W, C]`."""
    return planes.permute(0, 2, 3, 1).reshape(planes.shape[0], FRAME_TOKENS, -1)


def conditions_of(call: dict) -> list[LTXVideoCondition]:
    """A run's image conditions, however they were passed."""
    return call.get("conditions") or [LTXVideoCondition(image=call["image"])]


def image_latents(pipe, call: dict, batch_size: int = 1) -> list[Image]:
    """The image conditions of a run (seed 0), from the pipeline's own `prepare_latents` and a fresh generator.

    Both pipelines call `prepare_latents` before anything else draws from the generator, so this draws the same
    noise and the same VAE posterior samples as the run did. LTXConditionPipeline puts the keyframes' tokens
    in front of the video's, in the order of the conditions.
    """
    conditions = conditions_of(call)
    pixels = [pipe.video_processor.preprocess(condition.image, SIZE, SIZE) for condition in conditions]
    sizes = (batch_size, LATENT_CHANNELS, SIZE, SIZE, NUM_FRAMES)
    generator = torch.Generator().manual_seed(0)
    if type(pipe).__name__ == "LTXImageToVideoPipeline":
        latents = type(pipe).prepare_latents(pipe, pixels[0], *sizes, torch.float32, "cpu", generator)[0]
        return [Image(0, 0, to_planes(latents[:, :FRAME_TOKENS]))]
    strengths, indices = [c.strength for c in conditions], [c.frame_index for c in conditions]
    latents, _, _, keyframe_tokens = type(pipe).prepare_latents(
        pipe, [p.unsqueeze(2) for p in pixels], strengths, indices, *sizes,
        generator=generator, device="cpu", dtype=torch.float32,
    )  # fmt: skip
    keyframe_offsets = iter(range(0, keyframe_tokens, FRAME_TOKENS))
    offsets = [keyframe_tokens if index == 0 else next(keyframe_offsets) for index in indices]
    return [
        Image(index, offset, to_planes(latents[:, offset : offset + FRAME_TOKENS]))
        for index, offset in zip(indices, offsets, strict=True)
    ]


def moved(hidden: torch.Tensor, images: list[Image], new_latent: Callable[[Image], torch.Tensor]) -> torch.Tensor:
    """`hidden` with each image's tokens moved from its clean latent to `new_latent(image)`.

    Whatever the pipeline added to the clean latent (LTXConditionPipeline's conditioning noise) stays.
    """

    def fit(planes: torch.Tensor) -> torch.Tensor:
        return to_tokens(planes).repeat(hidden.shape[0] // planes.shape[0], 1, 1)

    result = hidden.clone()
    for image in images:
        tokens = slice(image.offset, image.offset + FRAME_TOKENS)
        result[:, tokens] = fit(new_latent(image)) + (hidden[:, tokens] - fit(image.clean))
    return result


def low_passed(hidden: torch.Tensor, images: list[Image], strength: float) -> torch.Tensor:
    """The transformer input with every image latent down-up filtered at `strength`."""
    return moved(hidden, images, lambda image: down_up(image.clean, FACTOR, strength))


def branch(inputs: dict, index: int) -> dict:
    """One half of a batched `[uncond, cond]` call (every tensor input of the LTX transformer is batched)."""
    return {key: value.chunk(2)[index] if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}


def rescaled(prediction: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale: mix in the prediction scaled to the standard deviation of `cond`, per sample."""
    dims = list(range(1, prediction.ndim))
    matched = prediction * cond.std(dim=dims, keepdim=True) / prediction.std(dim=dims, keepdim=True)
    return rescale * matched + (1 - rescale) * prediction


def scheduler_view(pipe, prediction: torch.Tensor) -> torch.Tensor:
    """What each pipeline hands `scheduler.step`: I2V unpacks and drops frame 0; Condition negates the tokens."""
    if type(pipe).__name__ == "LTXConditionPipeline":
        return -prediction
    video = prediction.reshape(prediction.shape[0], LATENT_FRAMES, LATENT_SIZE, LATENT_SIZE, -1)
    return video.permute(0, 4, 1, 2, 3)[:, :, 1:]


def alg_prediction(reference, call: dict, hidden: torch.Tensor, rescale: float = 0.0) -> torch.Tensor:
    """`D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅))` from an untouched copy of the transformer, branch by branch."""
    original, filtered = model_inputs(call), model_inputs(call, hidden_states=hidden)
    u_orig = reference(**branch(original, 0))[0]
    u_lp, c_lp = reference(**branch(filtered, 0))[0], reference(**branch(filtered, 1))[0]
    prediction = u_orig + CFG * (c_lp - u_lp)
    # The pipeline rescales with the std of the cond half it receives: c_lp + u_orig - u_lp.
    return rescaled(prediction, c_lp + u_orig - u_lp, rescale) if rescale else prediction


def expected_predictions(pipe, reference, record, images: list[Image], rescale: float = 0.0) -> list[torch.Tensor]:
    """The ALG prediction each step of a recorded run should hand the scheduler, at `STRENGTHS`."""
    expected = []
    for call, strength in zip(record.calls, STRENGTHS, strict=True):
        hidden = low_passed(call["hidden_states"], images, strength)
        expected.append(scheduler_view(pipe, alg_prediction(reference, call, hidden, rescale)))
    return expected


def run(family: str, pipe, config=None, **overrides) -> tuple[torch.Tensor, dict]:
    """One run of `pipe` (with ALG under `config`, if given): its latent video and its call arguments."""
    call = FAMILIES[family].call(**overrides)
    if config is None:
        return pipe(**call).frames, call
    with alg.enable(pipe, config):
        return pipe(**call).frames, call


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("batch_branches", "per_filtered_step"), [(True, [3]), (False, [2, 1])])
def test_every_step_follows_the_alg_formula_with_three_evaluations(family, batch_branches, per_filtered_step):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle, recording(pipe) as record:
        _, call = run(family, pipe)
    assert handle.adapter.name == FAMILIES[family].adapter
    assert record.evaluations == per_filtered_step * 3 + [2]
    expected = expected_predictions(pipe, reference, record, image_latents(pipe, call))
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("family", SINGLE_IMAGE)
def test_a_batch_of_two_videos_follows_the_alg_formula(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    embeds = torch.randn(4, tiny_ltx.TEXT_TOKENS, tiny_ltx.TEXT_DIM, generator=torch.Generator().manual_seed(1))
    masks = torch.ones(2, tiny_ltx.TEXT_TOKENS)
    prompts = {
        "prompt_embeds": embeds[:2],
        "negative_prompt_embeds": embeds[2:],
        "prompt_attention_mask": masks,
        "negative_prompt_attention_mask": masks,
    }
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        _, call = run(family, pipe, **prompts)
    assert record.evaluations == [6, 6, 6, 4]
    expected = expected_predictions(pipe, reference, record, image_latents(pipe, call, batch_size=2))
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("family", FAMILIES)
def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        _, call = run(family, pipe, guidance_scale=1.0)
    assert record.evaluations == [1, 1, 1, 1]
    images = image_latents(pipe, call)
    for step, (model_call, strength) in enumerate(zip(record.calls, STRENGTHS, strict=True)):
        hidden = low_passed(model_call["hidden_states"], images, strength)
        want = scheduler_view(pipe, reference(**model_inputs(model_call, hidden_states=hidden))[0])
        assert_prediction(record.predictions[step], want, message=f"step {step}")


@pytest.mark.parametrize("family", FAMILIES)
def test_replace_mode_with_cfg_low_passes_both_branches(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG.merge({"mode": "replace"})), recording(pipe) as record:
        _, call = run(family, pipe)
    assert record.evaluations == [2, 2, 2, 2]
    model_call = record.calls[0]
    hidden = low_passed(model_call["hidden_states"], image_latents(pipe, call), 1.0)
    filtered = model_inputs(model_call, hidden_states=hidden)
    u_lp, c_lp = reference(**branch(filtered, 0))[0], reference(**branch(filtered, 1))[0]
    assert_prediction(record.predictions[0], scheduler_view(pipe, u_lp + CFG * (c_lp - u_lp)))


@pytest.mark.parametrize("family", SINGLE_IMAGE)
def test_guidance_rescale_uses_the_std_of_the_cond_half_alg_returns_and_is_deterministic(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with recording(pipe) as record:
        first, call = run(family, pipe, CONFIG, guidance_rescale=0.7)
    assert torch.equal(run(family, pipe, CONFIG, guidance_rescale=0.7)[0], first)
    assert not torch.equal(run(family, pipe, CONFIG)[0], first)
    expected = expected_predictions(pipe, reference, record, image_latents(pipe, call), rescale=0.7)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def test_a_transformer_with_patches_larger_than_one_token_is_refused():
    pipe = tiny_ltx.ltx_i2v(patch_size=2)
    with pytest.raises(ALGError, match=r"patch_size=1 and patch_size_t=1.*patch_size=2,"):
        alg.enable(pipe, CONFIG)
    with pytest.raises(ALGError, match="not enabled"):
        alg.disable(pipe)


def test_pixel_space_refuses_a_run_given_latents_instead_of_an_image():
    pipe = tiny_ltx.ltx_i2v()
    latents = torch.randn(1, LATENT_FRAMES * FRAME_TOKENS, LATENT_CHANNELS, generator=torch.Generator().manual_seed(1))
    with (
        alg.enable(pipe, CONFIG.merge({"space": "pixel"})),
        recording(pipe) as record,
        pytest.raises(ALGError, match="passed `latents`"),
    ):
        run("ltx-video", pipe, latents=latents)
    assert record.evaluations == []


IMAGE = tiny_ltx.image(0, size=SIZE)
UNSUPPORTED_CONDITIONS = {
    "video": ([LTXVideoCondition(video=[IMAGE] * NUM_FRAMES)], f"is a video of {NUM_FRAMES} frames"),
    "weak image": ([LTXVideoCondition(image=IMAGE, strength=0.5)], "has strength 0.5"),
    "two at frame 0": ([LTXVideoCondition(image=IMAGE), LTXVideoCondition(image=IMAGE)], "at most one"),
    "text only": (None, "has none"),
}


@pytest.mark.parametrize("case", UNSUPPORTED_CONDITIONS)
def test_conditions_alg_cannot_filter_are_refused_before_anything_runs(case):
    conditions, message = UNSUPPORTED_CONDITIONS[case]
    pipe = tiny_ltx.ltx_condition()
    with alg.enable(pipe, CONFIG), recording(pipe) as record, pytest.raises(ALGError, match=message):
        run("ltx-video-condition", pipe, image=None, conditions=conditions)
    assert record.evaluations == []


def mode_latent(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mode of `[B, 3, H, W]` pixels, normalized with the VAE's latent statistics."""
    latent = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0]
    mean, std = pipe.vae.latents_mean.view(1, -1, 1, 1), pipe.vae.latents_std.view(1, -1, 1, 1)
    return (latent - mean) / std


@pytest.mark.parametrize("family", FAMILIES)
def test_pixel_space_encodes_each_low_passed_image_once_per_strength_with_the_posterior_mode(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    with alg.enable(pipe, config), recording(pipe) as record:
        _, call = run(family, pipe)
    strengths = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths
    conditions = conditions_of(call)
    assert len(encoded) == len(conditions) * (1 + 2)  # the pipeline's own encodes, then one per distinct strength

    pixels = {c.frame_index: pipe.video_processor.preprocess(c.image, SIZE, SIZE) for c in conditions}
    images = image_latents(pipe, call)
    for step, (model_call, strength) in enumerate(zip(record.calls, strengths, strict=True)):
        hidden = model_call["hidden_states"]
        if strength:
            filtered = {index: mode_latent(pipe, down_up(image, FACTOR, strength)) for index, image in pixels.items()}
            hidden = moved(hidden, images, lambda image, filtered=filtered: filtered[image.frame_index])
        want = scheduler_view(pipe, alg_prediction(reference, model_call, hidden))
        assert_prediction(record.predictions[step], want, message=f"step {step}")
