"""ALG on LTX-2 (`LTX2ImageToVideoPipeline`, `LTX2ConditionPipeline`): batched CFG on packed video tokens, with an
audio prediction alongside.

Every step is checked against an untouched copy of the transformer called with the low-passed images written into
their tokens here, independently of the library's layouts: latent frame 0 is the first `H * W` video tokens, and a
keyframe of `LTX2ConditionPipeline` the `H * W` tokens after the video's. The scheduler's input is compared on the
tokens the pipelines denoise (latent frames 1 and later), where the prediction is the guided one.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_ltx2
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs
from tests.support.tiny_ltx2 import AUDIO_CFG, CFG, LATENT_FRAMES, LATENT_SIZE, SIZE

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
FRAME_TOKENS = LATENT_SIZE * LATENT_SIZE
VIDEO_TOKENS = LATENT_FRAMES * FRAME_TOKENS
FAMILIES = tiny_ltx2.FAMILIES
IMAGE_OFFSETS = {"ltx2": [0], "ltx2-condition": [0], "ltx2-condition-keyframes": [0, VIDEO_TOKENS]}
STG = 1.0
MODALITY = 3.0
PERTURBED = {
    "stg_scale": STG,
    "audio_stg_scale": STG,
    "modality_scale": MODALITY,
    "audio_modality_scale": MODALITY,
    "spatio_temporal_guidance_blocks": [1],
}


@dataclass
class Recording:
    """Each transformer call's inputs, each model evaluation's batch, and what each scheduler step received.

    The pipeline steps the video with its scheduler and the audio with a deep copy of it, so `scheduler.step` is
    recorded on the class: `steps` alternates video and audio.
    """

    calls: list[dict] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)

    @property
    def video(self) -> list[torch.Tensor]:
        return self.steps[0::2]

    @property
    def audio(self) -> list[torch.Tensor]:
        return self.steps[1::2]


@contextlib.contextmanager
def recording(pipe, monkeypatch) -> Iterator[Recording]:
    record = Recording()
    signature = inspect.signature(pipe.transformer.forward)

    def pre_hook(module, args, kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        record.calls.append({k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in bound.items()})

    step = FlowMatchEulerDiscreteScheduler.step

    def recorded_step(self, model_output, *args, **kwargs):
        record.steps.append(model_output.detach().clone())
        return step(self, model_output, *args, **kwargs)

    monkeypatch.setattr(FlowMatchEulerDiscreteScheduler, "step", recorded_step)
    handles = [
        pipe.transformer.register_forward_pre_hook(pre_hook, with_kwargs=True),
        pipe.transformer.proj_out.register_forward_pre_hook(
            lambda m, args: record.evaluations.append(args[0].shape[0])
        ),
    ]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def to_planes(tokens: torch.Tensor) -> torch.Tensor:
    """One packed latent frame `[B, H * W, C]` (row by row) as `[B, C, H, W]`."""
    return tokens.reshape(tokens.shape[0], LATENT_SIZE, LATENT_SIZE, -1).permute(0, 3, 1, 2)


def to_tokens(planes: torch.Tensor) -> torch.Tensor:
    """`[B, C, H, W]` packed back into `[B, H * W, C]`."""
    return planes.permute(0, 2, 3, 1).reshape(planes.shape[0], FRAME_TOKENS, -1)


def low_passed(hidden: torch.Tensor, strength: float, offsets: list[int]) -> torch.Tensor:
    """Video tokens with the image frame starting at each of `offsets` down-up filtered at `strength`."""
    result = hidden.clone()
    for offset in offsets:
        tokens = slice(offset, offset + FRAME_TOKENS)
        result[:, tokens] = to_tokens(down_up(to_planes(hidden[:, tokens]), FACTOR, strength))
    return result


def branch(inputs: dict, index: int) -> dict:
    """One half of a batched `[uncond, cond]` call (every tensor input of the LTX-2 transformer is batched)."""
    return {key: value.chunk(2)[index] if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}


def evaluate(reference, inputs: dict, strength: float, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The untouched transformer's (video, audio) predictions for `inputs`, image frames low-passed at `strength`."""
    hidden = low_passed(inputs["hidden_states"], strength, offsets)
    video, audio = reference(**model_inputs(inputs, hidden_states=hidden))
    return video, audio


def denoised(prediction: torch.Tensor) -> torch.Tensor:
    """The tokens of latent frames 1 and later, from a packed prediction `[B, S, C]`."""
    return prediction[:, FRAME_TOKENS:VIDEO_TOKENS]


def scheduled(recorded: torch.Tensor) -> torch.Tensor:
    """`denoised` of what a pipeline handed the video scheduler.

    `LTX2ImageToVideoPipeline` hands it latent frames 1 and later, unpacked to `[B, C, F - 1, H, W]`;
    `LTX2ConditionPipeline` hands it every token, packed.
    """
    if recorded.ndim == 3:
        return denoised(recorded)
    return recorded.permute(0, 2, 3, 4, 1).reshape(recorded.shape[0], -1, recorded.shape[1])


def expected(
    reference, calls: list[dict], strength: float, perturbed: bool, offsets: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (video, audio) predictions of one step under ALG, from its recorded calls.

    `u_orig + w (c_lp - u_lp)`, plus, with the perturbed guidance on, `s (c_lp - p_stg_lp) + (m - 1) (c_lp - p_mod_lp)`
    with every perturbed prediction taken with the low-passed image too.
    """
    cfg_call = calls[0]
    u_orig = evaluate(reference, branch(cfg_call, 0), 0.0, offsets)
    u_lp = evaluate(reference, branch(cfg_call, 0), strength, offsets)
    c_lp = evaluate(reference, branch(cfg_call, 1), strength, offsets)
    scales = (CFG, AUDIO_CFG)
    result = [u_orig[k] + scales[k] * (c_lp[k] - u_lp[k]) for k in range(2)]
    if perturbed:
        p_stg = evaluate(reference, calls[1], strength, offsets)
        p_mod = evaluate(reference, calls[2], strength, offsets)
        for k in range(2):
            result[k] = result[k] + STG * (c_lp[k] - p_stg[k]) + (MODALITY - 1) * (c_lp[k] - p_mod[k])
    return denoised(result[0]), result[1]


def check_steps(family: str, reference, record: Recording, calls_per_step: int, perturbed: bool) -> None:
    for step, strength in enumerate(STRENGTHS):
        calls = record.calls[step * calls_per_step : (step + 1) * calls_per_step]
        video, audio = expected(reference, calls, strength, perturbed, IMAGE_OFFSETS[family])
        check(record, step, video, audio)


def check(record: Recording, step: int, video: torch.Tensor, audio: torch.Tensor) -> None:
    assert_prediction(scheduled(record.video[step]), video, rtol=1e-4, message=f"video, step {step}")
    assert_prediction(record.audio[step], audio, rtol=1e-4, message=f"audio, step {step}")


def run(family: str, pipe, **overrides):
    return pipe(**FAMILIES[family].call(**overrides))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("batch_branches", "per_filtered_step"), [(True, [3]), (False, [2, 1])])
def test_every_step_follows_the_alg_formula_for_video_and_audio(monkeypatch, family, batch_branches, per_filtered_step):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with (
        alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle,
        recording(pipe, monkeypatch) as record,
    ):
        run(family, pipe)
    assert handle.adapter.name == FAMILIES[family].adapter
    assert record.evaluations == per_filtered_step * 3 + [2]
    check_steps(family, reference, record, 1, perturbed=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_stg_and_modality_guidance_calls_see_the_low_passed_image_and_the_shift(monkeypatch, family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        run(family, pipe, **PERTURBED)
    assert record.evaluations == [3, 1, 1] * 3 + [2, 1, 1]
    check_steps(family, reference, record, 3, perturbed=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation(monkeypatch, family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        run(family, pipe, guidance_scale=1.0, audio_guidance_scale=1.0)
    assert record.evaluations == [1, 1, 1, 1]
    for step, strength in enumerate(STRENGTHS):
        video, audio = evaluate(reference, record.calls[step], strength, IMAGE_OFFSETS[family])
        check(record, step, denoised(video), audio)


@pytest.mark.parametrize("family", FAMILIES)
def test_without_cfg_the_perturbed_guidance_calls_see_the_low_passed_image_too(monkeypatch, family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        run(family, pipe, guidance_scale=1.0, audio_guidance_scale=1.0, **PERTURBED)
    assert record.evaluations == [1, 1, 1] * 4
    for step, strength in enumerate(STRENGTHS):
        cond, stg, mod = (evaluate(reference, c, strength, IMAGE_OFFSETS[family]) for c in record.calls[3 * step :][:3])
        video, audio = (cond[k] + STG * (cond[k] - stg[k]) + (MODALITY - 1) * (cond[k] - mod[k]) for k in range(2))
        check(record, step, denoised(video), audio)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_strength_leaves_video_and_audio_bit_identical(family):
    plain, pipe = FAMILIES[family].make(), FAMILIES[family].make()
    want = run(family, plain, **PERTURBED)
    with alg.enable(pipe, CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})):
        got = run(family, pipe, **PERTURBED)
    assert torch.equal(got.frames, want.frames)
    assert torch.equal(got.audio, want.audio)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_of_two_videos_follows_the_alg_formula(monkeypatch, family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    shape = (4, tiny_ltx2.TEXT_TOKENS, tiny_ltx2.TEXT_DIM * tiny_ltx2.TEXT_LAYERS)
    embeds = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    masks = torch.ones(2, tiny_ltx2.TEXT_TOKENS, dtype=torch.long)
    prompts = {
        "prompt_embeds": embeds[:2],
        "negative_prompt_embeds": embeds[2:],
        "prompt_attention_mask": masks,
        "negative_prompt_attention_mask": masks,
    }
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        run(family, pipe, **prompts, **PERTURBED)
    assert record.evaluations == [6, 2, 2] * 3 + [4, 2, 2]
    check_steps(family, reference, record, 3, perturbed=True)


def mode_latent(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mode of `[B, 3, H, W]` pixels, normalized with the VAE's latent statistics."""
    latent = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0]
    mean, std = pipe.vae.latents_mean.view(1, -1, 1, 1), pipe.vae.latents_std.view(1, -1, 1, 1)
    return (latent - mean) / std


def condition_pixels(pipe, call: dict) -> list[torch.Tensor]:
    """Each image condition of a run as the pipeline preprocessed it, `[1, 3, H, W]`, in token order."""
    if "image" in call:
        return [pipe.video_processor.preprocess(call["image"], height=SIZE, width=SIZE)]
    frames = pipe.preprocess_conditions(call["conditions"], SIZE, SIZE, tiny_ltx2.NUM_FRAMES, device="cpu")[0]
    return [pixels[:, :, 0] for pixels in frames]


@pytest.mark.parametrize("family", FAMILIES)
def test_pixel_space_encodes_each_low_passed_image_once_per_strength(monkeypatch, family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    call = FAMILIES[family].call()
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"})), recording(pipe, monkeypatch) as record:
        pipe(**call)
    images = condition_pixels(pipe, call)
    assert len(encoded) == 2 * len(images)  # the pipeline's own encodes, then one each for strength 1
    tokens = [to_tokens(mode_latent(pipe, down_up(pixels, FACTOR, 1.0))) for pixels in images]
    for step, strength in enumerate(STRENGTHS):
        cfg_call = record.calls[step]
        hidden = cfg_call["hidden_states"].clone()
        if strength:
            for offset, image_tokens in zip(IMAGE_OFFSETS[family], tokens, strict=True):
                hidden[:, offset : offset + FRAME_TOKENS] = image_tokens
        original, filtered = model_inputs(cfg_call), model_inputs(cfg_call, hidden_states=hidden)
        u_orig = reference(**branch(original, 0))
        u_lp, c_lp = reference(**branch(filtered, 0)), reference(**branch(filtered, 1))
        video = u_orig[0] + CFG * (c_lp[0] - u_lp[0])
        audio = u_orig[1] + AUDIO_CFG * (c_lp[1] - u_lp[1])
        check(record, step, denoised(video), audio)


def test_pixel_space_refuses_a_run_given_latents_instead_of_an_image():
    pipe = tiny_ltx2.ltx2_i2v()
    latents = torch.randn(1, tiny_ltx2.LATENT_CHANNELS, LATENT_FRAMES, LATENT_SIZE, LATENT_SIZE)
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"})), pytest.raises(ALGError, match="passed `latents`"):
        run("ltx2", pipe, latents=latents)


IMAGE = tiny_ltx2.image(0, size=SIZE)
UNSUPPORTED_CONDITIONS = {
    "video": ([LTX2VideoCondition(frames=[IMAGE] * 3, index=1, crf=0)], "is a video of 3 frames"),
    "weak image": ([LTX2VideoCondition(frames=IMAGE, strength=0.5, crf=0)], "has strength 0.5"),
    "two at index 0": (
        [LTX2VideoCondition(frames=IMAGE, crf=0), LTX2VideoCondition(frames=IMAGE, crf=0)],
        "at most one",
    ),
    "text only": (None, "has none"),
}


@pytest.mark.parametrize("case", UNSUPPORTED_CONDITIONS)
def test_conditions_alg_cannot_filter_are_refused_before_anything_runs(monkeypatch, case):
    conditions, message = UNSUPPORTED_CONDITIONS[case]
    pipe = tiny_ltx2.ltx2_condition()
    with (
        alg.enable(pipe, CONFIG),
        recording(pipe, monkeypatch) as record,
        pytest.raises(ALGError, match=message),
    ):
        run("ltx2-condition", pipe, conditions=conditions)
    assert record.evaluations == []


@pytest.mark.parametrize("family", ["ltx2", "ltx2-condition"])
def test_the_default_preset_is_ltx2_which_starts_from_the_paper_default(family):
    pipe = FAMILIES[family].make()
    with alg.enable(pipe) as handle:
        assert handle.config == alg.ALGConfig(preset="ltx2") == alg.ALGConfig(preset="paper")
