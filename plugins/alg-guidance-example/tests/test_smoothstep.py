import pytest

import alg_guidance as alg
from alg_guidance.testing import SCHEDULE_CHECKS
from alg_guidance_example import Smoothstep


@pytest.mark.parametrize("check", SCHEDULE_CHECKS, ids=lambda check: check.__name__)
def test_smoothstep_passes_the_schedule_contract(check):
    check(Smoothstep(threshold=0.8, ramp=0.1))


def test_smoothstep_fades_from_full_strength_to_zero_across_the_ramp():
    schedule = Smoothstep(threshold=0.8, ramp=0.1)
    levels = (1.0, 0.9, 0.85, 0.8, 0.3)
    strengths = [schedule(alg.StepState.from_step(0, 50, noise_level=level)) for level in levels]
    assert strengths == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])


def test_smoothstep_is_found_by_name_once_installed():
    config = alg.ALGConfig(filter={"kind": "median"}, schedule={"kind": "smoothstep", "threshold": 0.9})
    assert config.schedule == Smoothstep(threshold=0.9)
