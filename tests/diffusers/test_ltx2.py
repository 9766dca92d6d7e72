"""ALG on LTX-2 (`LTX2ImageToVideoPipeline`): batched CFG on packed video tokens, with an audio prediction alongside.

Every step is checked against an untouched copy of the transformer called with the low-passed image written into
latent frame 0 (the first `H * W` video tokens) here, independently of the library's layouts.
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

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_ltx2
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs
from tests.support.tiny_ltx2 import AUDIO_CFG, CFG, LATENT_FRAMES, LATENT_SIZE

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
FRAME_TOKENS = LATENT_SIZE * LATENT_SIZE
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


def low_passed(hidden: torch.Tensor, strength: float) -> torch.Tensor:
    """Video tokens with latent frame 0 (the first `H * W` tokens, row by row) down-up filtered at `strength`."""
    frame = hidden[:, :FRAME_TOKENS].reshape(hidden.shape[0], LATENT_SIZE, LATENT_SIZE, -1).permute(0, 3, 1, 2)
    filtered = down_up(frame, FACTOR, strength).permute(0, 2, 3, 1).reshape(hidden.shape[0], FRAME_TOKENS, -1)
    return torch.cat([filtered, hidden[:, FRAME_TOKENS:]], dim=1)


def branch(inputs: dict, index: int) -> dict:
    """One half of a batched `[uncond, cond]` call (every tensor input of the LTX-2 transformer is batched)."""
    return {key: value.chunk(2)[index] if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}


def evaluate(reference, inputs: dict, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The untouched transformer's (video, audio) predictions for `inputs` with frame 0 low-passed at `strength`."""
    video, audio = reference(**model_inputs(inputs, hidden_states=low_passed(inputs["hidden_states"], strength)))
    return video, audio


def video_view(prediction: torch.Tensor) -> torch.Tensor:
    """What the pipeline hands the video scheduler: the prediction unpacked to `[B, C, F, H, W]`, frame 0 dropped."""
    video = prediction.reshape(prediction.shape[0], LATENT_FRAMES, LATENT_SIZE, LATENT_SIZE, -1)
    return video.permute(0, 4, 1, 2, 3)[:, :, 1:]


def expected(reference, calls: list[dict], strength: float, perturbed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The (video, audio) predictions of one step under ALG, from its recorded calls.

    `u_orig + w (c_lp - u_lp)`, plus, with the perturbed guidance on, `s (c_lp - p_stg_lp) + (m - 1) (c_lp - p_mod_lp)`
    with every perturbed prediction taken with the low-passed image too.
    """
    cfg_call = calls[0]
    u_orig = evaluate(reference, branch(cfg_call, 0), 0.0)
    u_lp = evaluate(reference, branch(cfg_call, 0), strength)
    c_lp = evaluate(reference, branch(cfg_call, 1), strength)
    scales = (CFG, AUDIO_CFG)
    result = [u_orig[k] + scales[k] * (c_lp[k] - u_lp[k]) for k in range(2)]
    if perturbed:
        p_stg, p_mod = evaluate(reference, calls[1], strength), evaluate(reference, calls[2], strength)
        for k in range(2):
            result[k] = result[k] + STG * (c_lp[k] - p_stg[k]) + (MODALITY - 1) * (c_lp[k] - p_mod[k])
    return video_view(result[0]), result[1]


def check_steps(reference, record: Recording, calls_per_step: int, perturbed: bool) -> None:
    for step, strength in enumerate(STRENGTHS):
        calls = record.calls[step * calls_per_step : (step + 1) * calls_per_step]
        video, audio = expected(reference, calls, strength, perturbed)
        assert_prediction(record.video[step], video, rtol=1e-4, message=f"video, step {step}")
        assert_prediction(record.audio[step], audio, rtol=1e-4, message=f"audio, step {step}")


@pytest.mark.parametrize(("batch_branches", "per_filtered_step"), [(True, [3]), (False, [2, 1])])
def test_every_step_follows_the_alg_formula_for_video_and_audio(monkeypatch, batch_branches, per_filtered_step):
    pipe = tiny_ltx2.ltx2_i2v()
    reference = copy.deepcopy(pipe.transformer)
    with (
        alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle,
        recording(pipe, monkeypatch) as record,
    ):
        pipe(**tiny_ltx2.i2v_call())
    assert handle.adapter.name == "ltx2"
    assert record.evaluations == per_filtered_step * 3 + [2]
    check_steps(reference, record, 1, perturbed=False)


def test_stg_and_modality_guidance_calls_see_the_low_passed_image_and_the_shift(monkeypatch):
    pipe = tiny_ltx2.ltx2_i2v()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        pipe(**tiny_ltx2.i2v_call(**PERTURBED))
    assert record.evaluations == [3, 1, 1] * 3 + [2, 1, 1]
    check_steps(reference, record, 3, perturbed=True)


def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation(monkeypatch):
    pipe = tiny_ltx2.ltx2_i2v()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe, monkeypatch) as record:
        pipe(**tiny_ltx2.i2v_call(guidance_scale=1.0, audio_guidance_scale=1.0))
    assert record.evaluations == [1, 1, 1, 1]
    for step, strength in enumerate(STRENGTHS):
        video, audio = evaluate(reference, record.calls[step], strength)
        assert_prediction(record.video[step], video_view(video), rtol=1e-4, message=f"video, step {step}")
        assert_prediction(record.audio[step], audio, rtol=1e-4, message=f"audio, step {step}")


def test_zero_strength_leaves_video_and_audio_bit_identical():
    plain, pipe = tiny_ltx2.ltx2_i2v(), tiny_ltx2.ltx2_i2v()
    want = plain(**tiny_ltx2.i2v_call(**PERTURBED))
    with alg.enable(pipe, CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})):
        got = pipe(**tiny_ltx2.i2v_call(**PERTURBED))
    assert torch.equal(got.frames, want.frames)
    assert torch.equal(got.audio, want.audio)


def mode_latent(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mode of `[B, 3, H, W]` pixels, normalized with the VAE's latent statistics."""
    latent = pipe.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0]
    mean, std = pipe.vae.latents_mean.view(1, -1, 1, 1), pipe.vae.latents_std.view(1, -1, 1, 1)
    return (latent - mean) / std


def test_pixel_space_encodes_the_low_passed_image_once_per_strength(monkeypatch):
    pipe = tiny_ltx2.ltx2_i2v()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    call = tiny_ltx2.i2v_call()
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"})), recording(pipe, monkeypatch) as record:
        pipe(**call)
    assert len(encoded) == 2  # the pipeline's own encode, then one for strength 1
    pixels = pipe.video_processor.preprocess(call["image"], height=tiny_ltx2.SIZE, width=tiny_ltx2.SIZE)
    tokens = mode_latent(pipe, down_up(pixels, FACTOR, 1.0)).permute(0, 2, 3, 1).reshape(1, FRAME_TOKENS, -1)
    for step, strength in enumerate(STRENGTHS):
        cfg_call = record.calls[step]
        hidden = cfg_call["hidden_states"]
        if strength:
            hidden = torch.cat([tokens.expand(2, -1, -1), hidden[:, FRAME_TOKENS:]], dim=1)
        original, filtered = model_inputs(cfg_call), model_inputs(cfg_call, hidden_states=hidden)
        u_orig = reference(**branch(original, 0))
        u_lp, c_lp = reference(**branch(filtered, 0)), reference(**branch(filtered, 1))
        video = u_orig[0] + CFG * (c_lp[0] - u_lp[0])
        audio = u_orig[1] + AUDIO_CFG * (c_lp[1] - u_lp[1])
        assert_prediction(record.video[step], video_view(video), rtol=1e-4, message=f"video, step {step}")
        assert_prediction(record.audio[step], audio, rtol=1e-4, message=f"audio, step {step}")


def test_pixel_space_refuses_a_run_given_latents_instead_of_an_image():
    pipe = tiny_ltx2.ltx2_i2v()
    latents = torch.randn(1, tiny_ltx2.LATENT_CHANNELS, LATENT_FRAMES, LATENT_SIZE, LATENT_SIZE)
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"})), pytest.raises(ALGError, match="passed `latents`"):
        pipe(**tiny_ltx2.i2v_call(latents=latents))


def test_the_default_preset_is_ltx2_which_starts_from_the_paper_default():
    pipe = tiny_ltx2.ltx2_i2v()
    with alg.enable(pipe) as handle:
        assert handle.config == alg.ALGConfig(preset="ltx2") == alg.ALGConfig(preset="paper")


def test_a_batch_of_two_videos_follows_the_alg_formula(monkeypatch):
    pipe = tiny_ltx2.ltx2_i2v()
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
        pipe(**tiny_ltx2.i2v_call(**prompts, **PERTURBED))
    assert record.evaluations == [6, 2, 2] * 3 + [4, 2, 2]
    check_steps(reference, record, 3, perturbed=True)
