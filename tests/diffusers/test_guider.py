"""ALGGuidance, ALG as a diffusers guider, on the pipelines that take guiders.

Modular Wan 2.1 and 2.2 I2V (two experts, two guiders), modular and standard HunyuanVideo 1.5 I2V. Every step's
prediction is checked against the rule computed from an untouched copy of the transformer, with the condition's
channels written out here: `inner(c_lp, u_lp) + (u_orig - u_lp)`, which for classifier-free guidance is
`u_orig + w (c_lp - u_lp)`.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers.guiders import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
    TangentialClassifierFreeGuidance,
)

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_guider import CFG, CFG_2, FAMILIES

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three filtered at full strength (Wan 2.2's second expert takes step 2).
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


def guiders(family, make_inner, config=CONFIG):
    """One ALGGuidance per guider the family's pipeline takes, each around its own inner guider."""
    return [alg.ALGGuidance(make_inner(scale), config) for scale in (CFG, CFG_2)[: len(family.guiders)]]


def cfg(scale):
    return ClassifierFreeGuidance(guidance_scale=scale)


def scales(family):
    """The CFG scale of each step: Wan 2.2's second expert (steps 2 and 3) has its own guider."""
    return [CFG, CFG, CFG_2, CFG_2] if len(family.guiders) == 2 else [CFG] * 4


def low_passed(family, hidden, strength):
    """`hidden_states` with the condition channels low-passed (the paper's latent down-up)."""
    part = family.condition
    return torch.cat(
        [hidden[:, : part.start], down_up(hidden[:, part], FACTOR, strength), hidden[:, part.stop :]], dim=1
    )


def guided_run(name, make_inner=cfg, config=CONFIG):
    family = FAMILIES[name]
    pipe = family.make(*guiders(family, make_inner, config))
    references = {denoiser: copy.deepcopy(getattr(pipe, denoiser)) for denoiser in family.denoisers}
    with recording(pipe, family.denoisers) as record:
        family.run(pipe)
    return family, pipe, references, record


def expected_predictions(family, references, record, combine):
    """Per step: `combine(step, c_lp, u_lp, u_orig)` while filtered (3 calls), plain CFG after (2 calls)."""
    expected, first = [], 0
    for step, strength in enumerate(STRENGTHS):
        count = 3 if strength else 2
        calls = record.calls[first : first + count]
        first += count
        cond, uncond = calls[0], calls[1]
        assert all(call["denoiser"] == cond["denoiser"] for call in calls)
        model = references[cond["denoiser"]]
        if strength:
            assert torch.equal(calls[2]["hidden_states"], uncond["hidden_states"])  # the extra branch: uncond inputs
            lp = low_passed(family, cond["hidden_states"], strength)
            c_lp = model(**model_inputs(cond, hidden_states=lp))[0]
            u_lp = model(**model_inputs(uncond, hidden_states=lp))[0]
            u_orig = model(**model_inputs(uncond))[0]
            expected.append(combine(step, c_lp, u_lp, u_orig))
        else:
            c, u = model(**model_inputs(cond))[0], model(**model_inputs(uncond))[0]
            expected.append(u + scales(family)[step] * (c - u))
    assert first == len(record.calls)
    return expected


def assert_predictions(record, expected, steps=None):
    """The first `steps` predictions (all if `None`) equal `expected`."""
    for step, (got, want) in enumerate(zip(record.predictions[:steps], expected[:steps], strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_step_follows_the_alg_formula_with_cfg(name):
    family, _, references, record = guided_run(name)
    alg_rule = lambda step, c_lp, u_lp, u_orig: u_orig + scales(family)[step] * (c_lp - u_lp)  # noqa: E731
    assert_predictions(record, expected_predictions(family, references, record, alg_rule))
    assert record.evaluations == [1, 1, 1] * 3 + [1, 1]  # one extra evaluation per filtered step


def test_the_original_cfg_formulation_is_alg_with_scale_plus_one():
    """c + w (c - u) = u + (w + 1)(c - u): with the shift, ALG's rule at scale w + 1."""
    make = lambda scale: ClassifierFreeGuidance(guidance_scale=scale, use_original_formulation=True)  # noqa: E731
    family, _, references, record = guided_run("modular-wan2.1", make)
    alg_rule = lambda step, c_lp, u_lp, u_orig: u_orig + (CFG + 1) * (c_lp - u_lp)  # noqa: E731
    expected = expected_predictions(family, references, record, alg_rule)
    assert_predictions(record, expected, steps=3)  # the filtered steps


def test_apg_combines_the_low_passed_pair_and_alg_shifts_it():
    """inner(c_lp, u_lp) + (u_orig - u_lp), with an independent APG (its momentum fed the same pairs)."""

    def make(scale):
        return AdaptiveProjectedGuidance(guidance_scale=scale, adaptive_projected_guidance_momentum=-0.5, eta=0.5)

    family, _, references, record = guided_run("modular-wan2.1", make)
    apg = make(CFG)

    def apg_alg(step, c_lp, u_lp, u_orig):
        apg.set_state(step, 4, torch.tensor(0.0))
        apg.prepare_inputs({})  # at step 0, APG starts its momentum buffer here
        return apg.forward(c_lp, u_lp).pred + (u_orig - u_lp)

    expected = expected_predictions(family, references, record, apg_alg)
    assert_predictions(record, expected, steps=3)  # the filtered steps


def test_the_guider_matches_alg_enable_on_the_standard_hunyuanvideo15_pipeline():
    """The guider and the ModelHook integration (`alg.enable`, CFG only) run the same rule."""
    family = FAMILIES["hunyuanvideo1.5"]
    with alg.enable(family.make(), CONFIG) as handle:
        hooked = family.run(handle.pipeline)
    guided = family.run(family.make(alg.ALGGuidance(cfg(CFG), CONFIG)))
    assert_prediction(guided, hooked)


@pytest.mark.parametrize(
    "make_inner",
    [
        cfg,
        lambda scale: AdaptiveProjectedGuidance(guidance_scale=scale, adaptive_projected_guidance_momentum=-0.5),
        lambda scale: ClassifierFreeZeroStarGuidance(guidance_scale=scale, zero_init_steps=1),
        lambda scale: TangentialClassifierFreeGuidance(guidance_scale=scale),
    ],
    ids=["cfg", "apg", "cfg-zero-star", "tcfg"],
)
@pytest.mark.parametrize("name", ["modular-wan2.1", "modular-wan2.2"])
def test_zero_strength_is_the_inner_guider_alone(name, make_inner):
    family = FAMILIES[name]
    alone = family.run(family.make(*[make_inner(scale) for scale in (CFG, CFG_2)[: len(family.guiders)]]))
    pipe = family.make(*guiders(family, make_inner, OFF))
    with recording(pipe, family.denoisers) as record:
        wrapped = family.run(pipe)
    assert torch.equal(wrapped, alone)
    assert record.evaluations == [1, 1] * 4


def test_without_cfg_each_step_runs_once_with_the_low_passed_condition():
    """Guidance scale 1 (a step-distilled model): one evaluation per step, `D(LP(I), c)` while filtered."""
    family, _, references, record = guided_run("modular-wan2.1", lambda scale: cfg(1.0))
    assert record.evaluations == [1] * 4
    for step, (call, strength) in enumerate(zip(record.calls, STRENGTHS, strict=True)):
        want = references["transformer"](
            **model_inputs(call, hidden_states=low_passed(family, call["hidden_states"], strength))
        )[0]
        assert_prediction(record.predictions[step], want, message=f"step {step}")


def test_a_second_run_filters_its_own_condition():
    """A new run (step 0) starts a new record: the second run's filtered condition is not the first run's."""
    family = FAMILIES["modular-wan2.1"]
    pipe = family.make(alg.ALGGuidance(cfg(CFG), CONFIG))
    family.run(pipe, seed=0)
    second = family.run(pipe, seed=1)
    assert torch.equal(second, family.run(family.make(alg.ALGGuidance(cfg(CFG), CONFIG)), seed=1))


def test_save_and_load_round_trip(tmp_path):
    family = FAMILIES["modular-wan2.1"]
    guider = alg.ALGGuidance(AdaptiveProjectedGuidance(guidance_scale=CFG, eta=0.5), "wan2.1", adapter="wan2.1")
    guider.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "guider_config.json").read_text())
    assert saved["_class_name"] == "ALGGuidance"
    assert saved["inner"]["_class_name"] == "AdaptiveProjectedGuidance" and saved["inner"]["eta"] == 0.5
    assert saved["alg"] == alg.get_preset("wan2.1").config.model_dump(mode="json")
    loaded = alg.ALGGuidance.from_pretrained(tmp_path)
    assert isinstance(loaded.inner, AdaptiveProjectedGuidance) and loaded.inner.eta == 0.5
    assert loaded.alg_config == guider.alg_config and loaded.adapter_name == "wan2.1"
    pipe = family.make()
    pipe.update_components(guider=loaded)
    assert pipe.guider is loaded
    fresh = alg.ALGGuidance(AdaptiveProjectedGuidance(guidance_scale=CFG, eta=0.5), "wan2.1")
    assert torch.equal(family.run(pipe), family.run(family.make(fresh)))


def test_new_copies_the_guider():
    guider = alg.ALGGuidance(cfg(CFG), CONFIG)
    copy_ = guider.new()
    assert copy_ is not guider and copy_.alg_config == CONFIG and copy_.inner.guidance_scale == CFG


def test_a_denoiser_without_a_known_condition_is_refused():
    family = FAMILIES["modular-wan2.1"]
    pipe = family.make(alg.ALGGuidance(cfg(CFG), CONFIG, adapter="cogvideox"))
    with pytest.raises(ALGError, match=r"adapter 'cogvideox' knows where.*WanTransformer3DModel"):
        family.run(pipe)


def test_bad_arguments_are_refused():
    with pytest.raises(ALGError, match="latent space only"):
        alg.ALGGuidance(cfg(CFG), CONFIG.merge({"space": "pixel"}))
    with pytest.raises(ALGError, match="no diffusers guider"):
        alg.ALGGuidance({"_class_name": "NoSuchGuidance"})
    with pytest.raises(ALGError, match="not another ALGGuidance"):
        alg.ALGGuidance(alg.ALGGuidance())


def test_a_standard_pipeline_saves_and_loads_its_alg_guider(tmp_path):
    """`save_pretrained` writes guider/guider_config.json; `from_pretrained` builds the ALGGuidance again."""
    family = FAMILIES["hunyuanvideo1.5"]
    pipe = family.make(alg.ALGGuidance(AdaptiveProjectedGuidance(guidance_scale=CFG, eta=0.5), CONFIG))
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["guider"][1] == "ALGGuidance"
    no_text = dict.fromkeys(("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"))
    loaded = type(pipe).from_pretrained(tmp_path, **no_text).guider
    assert isinstance(loaded, alg.ALGGuidance) and isinstance(loaded.inner, AdaptiveProjectedGuidance)
    assert loaded.config == pipe.guider.config and loaded.alg_config == CONFIG
    expected = family.run(pipe)
    pipe.guider = loaded
    assert torch.equal(family.run(pipe), expected)
