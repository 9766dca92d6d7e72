"""ALG through the node on ComfyUI's own Wan models and samplers, against the formula computed independently."""

from __future__ import annotations

import math
import uuid

import comfy.samplers
import comfy_tiny as tiny
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from comfyui_alg_guidance.nodes import ALGGuidance

FACTOR = 0.4
CFG = 5.0
STEP_WINDOW = "filter: {kind: downsample, factor: 0.4}\nschedule: {kind: step, end: 0.7}"  # 3 of 4 steps
OFF = "schedule: {kind: constant, value: 0.0}"


def down_up(x: torch.Tensor, strength: float) -> torch.Tensor:
    """ALG's down-up low-pass from the paper: antialiased bilinear resize by r = 1 - (1 - factor) s, and back."""
    resize = 1.0 - (1.0 - FACTOR) * strength
    height, width = x.shape[-2:]
    planes = x.reshape(-1, 1, height, width)
    size = (max(1, round(height * resize)), max(1, round(width * resize)))
    down = F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False, antialias=True).reshape(
        x.shape
    )


def alg(model, settings=STEP_WINDOW, preset="auto"):
    return ALGGuidance().patch(model, preset, settings, "")[0]


def record_cfg(model, expected):
    """Record every CFG result and what `expected(args)` computes from its inputs, through ComfyUI's post-CFG hook
    (which only observes here); `expected` calls the model through ComfyUI's plain `calc_cond_batch`."""
    calls = []

    def observe(args):
        sigmas = args["model_options"]["transformer_options"]["sample_sigmas"].tolist()
        calls.append((args["denoised"], expected(args, sigmas), expected_strength(float(args["sigma"][0]), sigmas)))
        return args["denoised"]

    model.set_model_sampler_post_cfg_function(observe)
    return calls


def evaluate(args, conds, x=None):
    """The model's outputs for `conds`, through ComfyUI's own `calc_cond_batch`, not the ALG node's function."""
    x = args["input"] if x is None else x
    return comfy.samplers.calc_cond_batch(args["model"], conds, x, args["sigma"], args["model_options"])


def count_evaluations(model):
    """For every prediction the sampler asks for: its sigma, the sampler's sigma list, and how many samples the
    model evaluated for it (ComfyUI batches branches as free memory allows, so calls are summed)."""
    evaluations, pending = [], []

    def wrapper(apply_model, args):
        pending.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    def observe(args):
        sigmas = args["model_options"]["transformer_options"]["sample_sigmas"].tolist()
        evaluations.append((float(args["sigma"][0]), sigmas, sum(pending)))
        pending.clear()
        return args["denoised"]

    model.set_model_unet_function_wrapper(wrapper)
    model.set_model_sampler_post_cfg_function(observe)
    return evaluations


def low_passed_concat(entries, strength):
    """The entries with the 16 image-latent channels of `c_concat` (after Wan's 4 mask channels) low-passed."""
    result = []
    for entry in entries:
        concat = entry["model_conds"]["c_concat"]
        tensor = concat.cond.clone()
        tensor[:, 4:] = down_up(tensor[:, 4:], strength)
        result.append(
            {
                **entry,
                "model_conds": {**entry["model_conds"], "c_concat": concat._copy_with(tensor)},
                "uuid": uuid.uuid4(),
            }
        )
    return result


def expected_strength(sigma: float, sigmas: list[float], end: float = 0.7) -> float:
    """The step window's strength at `sigma`: position in the sigma list, interpolated in log sigma."""
    steps = np.array(sigmas[:-1], dtype=np.float64)
    position = float(np.interp(-math.log(sigma), -np.log(steps), np.arange(len(steps))))
    return 1.0 if position / (len(steps) - 1) <= end else 0.0


def alg_by_hand(cfg=CFG):
    """ALG at the step window's strength, with Wan's image-latent channels low-passed by hand."""

    def expected(args, sigmas):
        strength = expected_strength(float(args["sigma"][0]), sigmas)
        cond, uncond = args["cond"], args["uncond"]
        if uncond is None:  # ComfyUI skips the negative branch at CFG 1
            (c,) = evaluate(args, [low_passed_concat(cond, strength) if strength else cond])
            return c
        if not strength:
            c, u = evaluate(args, [cond, uncond])
            return u + cfg * (c - u)
        c_lp, u_orig, u_lp = evaluate(
            args, [low_passed_concat(cond, strength), uncond, low_passed_concat(uncond, strength)]
        )
        return u_orig + cfg * (c_lp - u_lp)

    return expected


@pytest.mark.parametrize("cfg", [CFG, 1.0])
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_is_the_alg_formula_with_the_model_called_independently(batch_branches, cfg):
    model = alg(tiny.wan21_i2v(), STEP_WINDOW + f"\nbatch_branches: {str(batch_branches).lower()}")
    calls = record_cfg(model, alg_by_hand(cfg))
    positive, negative, latent = tiny.wan_conditioning()
    tiny.sample(model, positive, negative, latent, cfg=cfg)
    assert [strength for *_, strength in calls] == [1.0, 1.0, 1.0, 0.0]
    for index, (got, want, _) in enumerate(calls):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"step {index}")


def test_first_last_frame_conditioning_has_both_images_low_passed_at_every_step():
    model = alg(tiny.wan21_i2v())
    calls = record_cfg(model, alg_by_hand())
    positive, negative, latent = tiny.wan_conditioning(frames=4, last_frame=True)
    tiny.sample(model, positive, negative, latent)
    assert [strength for *_, strength in calls] == [1.0, 1.0, 1.0, 0.0]
    for index, (got, want, _) in enumerate(calls):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"step {index}")


def test_at_zero_strength_or_bypassed_sampling_is_bit_identical():
    positive, negative, latent = tiny.wan_conditioning()
    plain = tiny.sample(tiny.wan21_i2v(), positive, negative, latent)
    assert torch.equal(tiny.sample(alg(tiny.wan21_i2v(), OFF), positive, negative, latent), plain)
    assert not torch.equal(tiny.sample(alg(tiny.wan21_i2v()), positive, negative, latent), plain)


def test_the_node_patches_a_clone_and_leaves_the_input_model_untouched():
    model = tiny.wan21_i2v()
    patched = alg(model)
    assert patched is not model and "sampler_calc_cond_batch_function" not in model.model_options
    positive, negative, latent = tiny.wan_conditioning()
    assert torch.equal(
        tiny.sample(model, positive, negative, latent), tiny.sample(tiny.wan21_i2v(), positive, negative, latent)
    )


def test_alg_applied_twice_samples_with_the_settings_applied_last():
    positive, negative, latent = tiny.wan_conditioning()
    once = tiny.sample(alg(tiny.wan21_i2v()), positive, negative, latent)
    assert torch.equal(tiny.sample(alg(alg(tiny.wan21_i2v(), OFF)), positive, negative, latent), once)
    plain = tiny.sample(tiny.wan21_i2v(), positive, negative, latent)
    assert torch.equal(tiny.sample(alg(alg(tiny.wan21_i2v()), OFF), positive, negative, latent), plain)


def test_at_cfg_1_the_model_evaluates_one_sample_per_step():
    model = alg(tiny.wan21_i2v())
    evaluations = count_evaluations(model)
    positive, negative, latent = tiny.wan_conditioning()
    tiny.sample(model, positive, negative, latent, cfg=1.0)
    assert [count for *_, count in evaluations] == [1, 1, 1, 1]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun", "uni_pc"])
def test_every_sampler_sees_the_strength_of_its_own_sigmas(sampler):
    model = alg(tiny.wan21_i2v())
    evaluations = count_evaluations(model)
    positive, negative, latent = tiny.wan_conditioning()
    steps = 6
    tiny.sample(model, positive, negative, latent, steps=steps, sampler=sampler)
    assert len(evaluations) >= steps
    for sigma, sigmas, count in evaluations:
        assert count == (3 if expected_strength(sigma, sigmas) else 2), f"{sampler} at sigma {sigma}"
    assert {count for *_, count in evaluations} == {2, 3}


def test_a_text_to_video_model_is_refused_with_the_served_families():
    with pytest.raises(ValueError, match=r"ALG does not serve this WAN21 model .* Served: Wan 2\.1 I2V"):
        alg(tiny.wan21_t2v())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("filter.factor: 1.5", "factor"),
        ("schedule: {kind: nope}", "unknown schedule 'nope'"),
        ("[1, 2]", "settings must be a YAML mapping"),
        ("filter: {kind: downsample", "settings, line 1, column 26"),
        ("filter: !!python/name:os.system x", "settings, line 1"),
        ("space: pixel", "space must be 'latent'"),
    ],
)
def test_bad_settings_are_reported_by_the_nodes_validation(settings, message):
    result = ALGGuidance.VALIDATE_INPUTS("auto", settings, "")
    assert isinstance(result, str) and message in result


def test_settings_read_numbers_as_yaml_1_2_does():
    assert ALGGuidance.VALIDATE_INPUTS("auto", "filter.factor: 4e-1", "") is True


def test_a_missing_config_file_is_reported():
    result = ALGGuidance.VALIDATE_INPUTS("auto", "", "/no/such/alg.yaml")
    assert isinstance(result, str) and "is not a file" in result
