"""`from_pipeline` on every family the diffusers integration serves: sampled exactly as the pipeline, or refused.

For the served families, the k-diffusion denoiser with plain CFG must reproduce the pipeline's own prediction at a
step (flow-matching: `denoised = x_t - t * v` at `sigma = t / (1 - t)`), the decoder must give the pipeline's own
frames, and ALG at zero strength must be exactly plain CFG.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alg_guidance as alg
from alg_guidance.adapters.schedulers import is_flow_matching
from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import from_pipeline
from tests.support.families import all_families
from tests.support.recording import assert_prediction, recording

FAMILIES = all_families()
REGISTRY = alg.default_registry()
SERVED = [name for name, family in FAMILIES.items() if REGISTRY.adapter(family.adapter).k_diffusion_refusal is None]
REFUSED = [name for name in FAMILIES if name not in SERVED]
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": 0.4}, schedule={"kind": "step", "end": 0.7})
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


def cfg_by_hand(setup):
    """Plain CFG on the setup's denoiser, branches [uncond, cond] in one batch, written out."""
    image_cond, cond, uncond = setup.image_cond, setup.cond, setup.uncond

    def denoiser(x, sigma):
        if uncond is None:
            return setup.denoiser(x, sigma, **image_cond, **cond)
        inputs = {name: torch.cat([value, value]) for name, value in image_cond.items()}
        inputs.update({name: torch.cat([uncond[name], cond[name]]) for name in cond})
        u, c = setup.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **inputs).chunk(2)
        return u + setup.cfg_scale * (c - u)

    return denoiser


def test_the_served_and_refused_families_are_the_ones_the_docs_name():
    assert {FAMILIES[name].adapter for name in SERVED} == {
        "wan2.1",
        "skyreels-v2",
        "cogvideox",
        "hunyuanvideo-33ch",
        "hunyuanvideo1.5",
        "hunyuanvideo-skyreels",
    }


@pytest.mark.parametrize("name", REFUSED)
def test_a_family_k_diffusion_cannot_sample_is_refused_with_its_reason(name):
    family = FAMILIES[name]
    pipe = family.make()
    reason = REGISTRY.adapter(family.adapter).k_diffusion_refusal
    with pytest.raises(ALGError, match=f"cannot sample {type(pipe).__name__} \\({family.adapter}\\)") as error:
        from_pipeline(pipe, **family.call())
    assert reason in str(error.value)


@pytest.mark.parametrize("name", SERVED)
def test_plain_cfg_through_the_setup_is_the_pipelines_own_prediction(name):
    family = FAMILIES[name]
    pipe = family.make()
    if not is_flow_matching(pipe.scheduler):
        pytest.skip("CogVideoX's v-prediction is checked against its DDIM run in test_pipeline.py")
    with recording(pipe, family.denoisers, family.counted) as record:
        family.run(pipe)
    setup = from_pipeline(pipe, **family.call())
    calls_per_step = len(record.calls) // len(record.predictions)
    step = 1
    call = record.calls[step * calls_per_step]
    x_t = call["hidden_states"][:, : setup.noise.shape[1]].double()
    prediction = record.predictions[step].double()
    t = call["timestep"].double().reshape(-1)[:1] / pipe.scheduler.config.num_train_timesteps
    sigma = t / (1 - t)
    got = cfg_by_hand(setup)(x_t.float() * (1 + sigma.float()), sigma.float())
    assert_prediction(got.double(), x_t - t * prediction, rtol=1e-4)
    assert torch.equal(setup.noise, record.calls[0]["hidden_states"][:, : setup.noise.shape[1]])


@pytest.mark.parametrize("name", SERVED)
def test_decoding_the_pipelines_final_latents_gives_its_own_frames(name):
    family = FAMILIES[name]
    pipe = family.make()
    finals = []
    step = pipe.scheduler.step

    def keep_last(*args, **kwargs):
        output = step(*args, **kwargs)
        finals.append(output[0])
        return output

    pipe.scheduler.step = keep_last
    frames = pipe(**family.call(output_type="np")).frames
    del pipe.scheduler.step
    setup = from_pipeline(pipe, **family.call())
    assert np.array_equal(setup.decode(finals[-1]), frames)


@pytest.mark.parametrize("name", SERVED)
def test_alg_off_samples_exactly_as_plain_cfg_and_alg_on_differs(name, sampling):
    family = FAMILIES[name]
    setup = from_pipeline(family.make(), **family.call())
    x = setup.noise * setup.sigmas[0]
    plain = sampling.sample_euler(cfg_by_hand(setup), x, setup.sigmas, disable=True)
    assert torch.equal(sampling.sample_euler(setup.guide(OFF), x, setup.sigmas, disable=True), plain)
    guided = setup.guide(CONFIG)
    assert guided.mode == ("alg" if setup.uncond is not None else "replace")
    assert not torch.allclose(sampling.sample_dpmpp_2m(guided, x, setup.sigmas, disable=True), plain)
