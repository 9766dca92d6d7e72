"""The `-lightning` presets on step-distilled sampling: a LoRA loaded from a file, CFG 1, 4 and 8 steps.

One evaluation per step: with the low-passed condition while the noise level is at least the preset's threshold,
the plain one after; the window is the same in noise level at 4 steps as at 8. Checked against an untouched copy of
the LoRA-carrying transformer called with the condition channels (`hidden_states[:, 16:36]`) written out here.
"""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

import alg_guidance as alg
from tests.support import tiny_wan
from tests.support.compat import lora_state_dict
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

LIGHTNING_SHIFT = 5.0


def with_lora_from_file(pipe, tmp_path):
    """`pipe` with a tiny random LoRA (built with peft) saved as a file and loaded back with `load_lora_weights`."""
    layers = {key.removeprefix("transformer."): value for key, value in lora_state_dict("wan2.1").items()}
    WanImageToVideoPipeline.save_lora_weights(tmp_path, transformer_lora_layers=layers)
    pipe.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights.safetensors", adapter_name="lightning")
    return pipe


def lightning_run(pipe, preset, steps, **call):
    """Sample `steps` steps at CFG 1 under `preset`; the recording, a copy of each denoiser, the noise levels."""
    references = {name: copy.deepcopy(getattr(pipe, name)) for name in ("transformer", "transformer_2")}
    with alg.enable(pipe, preset), recording(pipe, [n for n in references if references[n] is not None]) as record:
        pipe(**tiny_wan.call_kwargs(guidance_scale=1.0, num_inference_steps=steps, **call))
    noise_levels = pipe.scheduler.sigmas[:steps].tolist()  # flow matching: the sigma is the noise level
    return record, references, noise_levels


def assert_one_evaluation_per_step(record, references, noise_levels, threshold):
    """One call per step; low-passed exactly while the noise level is at least `threshold`."""
    assert record.evaluations == [1] * len(noise_levels)
    for step, (call, level) in enumerate(zip(record.calls, noise_levels, strict=True)):
        hidden = call["hidden_states"]
        if level >= threshold:
            hidden = torch.cat([hidden[:, :16], down_up(hidden[:, 16:], 0.4, 1.0)], dim=1)
        want = references[call["denoiser"]](**model_inputs(call, hidden_states=hidden))[0]
        assert_prediction(record.predictions[step], want, message=f"step {step}, noise level {level:.3f}")


@pytest.mark.parametrize("steps", [4, 8])
def test_wan21_lightning_low_passes_the_one_evaluation_in_a_noise_level_window(steps, tmp_path):
    pipe = with_lora_from_file(tiny_wan.wan21(FlowMatchEulerDiscreteScheduler(shift=LIGHTNING_SHIFT)), tmp_path)
    assert pipe.transformer.peft_config  # the LoRA is loaded, not merged
    record, references, levels = lightning_run(pipe, "wan2.1-lightning", steps)
    threshold = alg.get_preset("wan2.1-lightning").config.schedule.threshold
    assert_one_evaluation_per_step(record, references, levels, threshold)
    # the same window in noise level: 2 of 4 steps, 3 of 8 (at shift 5 the 4th of 8 is just below 0.9)
    active = [level >= threshold for level in levels]
    assert active == {4: [True, True, False, False], 8: [True] * 3 + [False] * 5}[steps]


def test_wan22_lightning_serves_both_experts_at_cfg_1(tmp_path):
    """A LoRA on each expert, as the Wan 2.2 Lightning LoRAs come (one for the high-noise, one for the low-noise)."""
    pipe = with_lora_from_file(tiny_wan.wan22(), tmp_path)
    pipe.load_lora_weights(
        tmp_path,
        weight_name="pytorch_lora_weights.safetensors",
        adapter_name="lightning_2",
        load_into_transformer_2=True,
    )
    assert pipe.transformer.peft_config and pipe.transformer_2.peft_config
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=LIGHTNING_SHIFT)
    record, references, levels = lightning_run(pipe, "wan2.2-lightning", 4, guidance_scale_2=1.0)
    threshold = alg.get_preset("wan2.2-lightning").config.schedule.threshold
    assert_one_evaluation_per_step(record, references, levels, threshold)
    boundary = pipe.config.boundary_ratio
    experts = ["transformer" if level >= boundary else "transformer_2" for level in levels]
    assert [call["denoiser"] for call in record.calls] == experts and "transformer_2" in experts
