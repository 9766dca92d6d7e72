"""What holds for every adapter's pipeline: ALG at zero strength, and after `disable`, changes nothing.

The exact ALG rule of each family is tested in its own file (test_wan.py, test_cogvideox.py, ...), where the
condition's layout is written out independently.
"""

from __future__ import annotations

import pytest
import torch

import alg_guidance as alg
from alg_guidance.registry import default_registry
from tests.support.compat import CONFIG, assert_no_alg_left, record_run, untouched
from tests.support.families import all_families
from tests.support.recording import recording

FAMILIES = all_families()
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


@pytest.mark.parametrize("name", FAMILIES)
def test_zero_strength_hands_the_scheduler_exactly_the_untouched_predictions(name):
    family = FAMILIES[name]
    plain, pipe = family.make(), family.make()
    with recording(plain, family.denoisers, family.counted) as plain_steps:
        family.run(plain)
    with alg.enable(pipe, OFF), recording(pipe, family.denoisers, family.counted) as off_steps:
        assert torch.equal(family.run(pipe), untouched(name).frames)
    assert off_steps.evaluations == plain_steps.evaluations
    for got, want in zip(off_steps.predictions, plain_steps.predictions, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", FAMILIES)
def test_after_disable_the_pipeline_is_bit_identical_to_one_never_enabled(name):
    family = FAMILIES[name]
    pipe = family.make()
    attributes = [set(vars(getattr(pipe, denoiser))) for denoiser in family.denoisers]
    with alg.enable(pipe, CONFIG):
        assert not torch.equal(family.run(pipe), untouched(name).frames)
    assert_no_alg_left(pipe, family)
    assert [set(vars(getattr(pipe, denoiser))) for denoiser in family.denoisers] == attributes
    assert torch.equal(family.run(pipe), untouched(name).frames)
    pixel_space = default_registry().adapter(family.adapter).pixel_space
    alg.enable(pipe, CONFIG.merge({"space": "pixel"}) if pixel_space else CONFIG).disable()
    assert_no_alg_left(pipe, family)
    after = record_run(family, pipe)
    assert torch.equal(after.frames, untouched(name).frames)
    assert after.evaluations == untouched(name).evaluations
