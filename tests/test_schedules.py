from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.preview import flow_matching_noise_level
from alg_guidance.schedules import (
    Adaptive,
    Constant,
    Cosine,
    Exponential,
    Linear,
    Step,
    StepState,
    noise_level_from_sigma,
)
from alg_guidance.testing import SCHEDULE_CHECKS

SCHEDULES = [cls() for cls in alg.default_registry().schedules().values()] + [
    Step(start=0.1, end=0.3),
    Linear(start_weight=0.2, end_weight=0.9, end=1.0),
    Exponential(rate=3.0, floor=0.05),
    Adaptive(threshold=0.5, ramp=0.4),
]


@pytest.mark.parametrize("check", SCHEDULE_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_every_schedule_passes_the_contract(schedule, check):
    check(schedule)


def test_the_contract_covers_every_registered_schedule():
    assert {s.kind for s in SCHEDULES} == set(alg.default_registry().schedules())


def strengths(schedule, num_steps):
    return [schedule(StepState.from_step(step, num_steps)) for step in range(num_steps)]


# The reference's interval schedule over 50 steps, as its official configurations use it: which steps are active.
@pytest.mark.parametrize(
    ("preset", "active_steps"), [("wan2.1", 10), ("cogvideox", 2), ("hunyuanvideo", 2), ("paper", 5)]
)
def test_step_schedule_reproduces_the_official_windows(preset, active_steps):
    schedule = alg.get_preset(preset).config.schedule
    assert strengths(schedule, 50) == [1.0] * active_steps + [0.0] * (50 - active_steps)


def test_step_schedule_window_with_a_late_start():
    # progress i / 9 for 10 steps: 0, .111, .222, .333, ... ; window [0.2, 0.4] holds steps 2 and 3
    assert strengths(Step(start=0.2, end=0.4), 10) == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]


def test_linear_schedule_matches_the_reference_table():
    # 11 steps: progress 0, 0.1, ..., 1; ramp from 1 to 0 reached at progress 0.5, constant after
    expected = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert strengths(Linear(start_weight=1.0, end_weight=0.0, end=0.5), 11) == pytest.approx(expected, abs=1e-12)
    rising = [0.2 + 0.7 * i / 10 for i in range(11)]
    assert strengths(Linear(start_weight=0.2, end_weight=0.9, end=1.0), 11) == pytest.approx(rising, abs=1e-12)


def test_exponential_schedule_matches_the_reference_formula():
    values = strengths(Exponential(rate=10.0), 50)
    assert values == [math.exp(-10.0 * (i / 49)) for i in range(50)]  # the reference: exp(-rate * (i / (N - 1)))
    floored = strengths(Exponential(rate=10.0, floor=0.01), 50)
    assert floored[:23] == values[:23] and set(floored[23:]) == {0.0}  # exp(-10 * 23/49) < 0.01


def test_cosine_and_constant_schedules():
    assert strengths(Cosine(end=0.5), 5) == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0], abs=1e-12)
    assert strengths(Constant(value=0.3), 4) == [0.3] * 4


def test_a_single_step_run_has_progress_zero():
    assert StepState.from_step(0, 1).progress == 0.0
    assert Step(end=0.0)(StepState.from_step(0, 1)) == 1.0


@pytest.mark.parametrize("num_steps", [20, 50, 100])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_adaptive_schedule_filters_the_same_noise_window_whatever_the_step_count_or_shift(num_steps, shift):
    schedule = Adaptive(threshold=0.9)
    states = [
        StepState.from_step(step, num_steps, flow_matching_noise_level(step, num_steps, shift))
        for step in range(num_steps)
    ]
    active = [state.noise_level for state in states if schedule(state) == 1.0]
    inactive = [state.noise_level for state in states if schedule(state) == 0.0]
    assert len(active) + len(inactive) == num_steps
    assert min(active) >= 0.9 > max(inactive)


def test_a_step_window_moves_in_noise_level_with_the_shift_where_adaptive_does_not():
    def last_active_noise(schedule, shift):
        states = [StepState.from_step(i, 50, flow_matching_noise_level(i, 50, shift)) for i in range(50)]
        return min(state.noise_level for state in states if schedule(state) > 0)

    step = Step(end=0.2)
    assert last_active_noise(step, 1.0) == pytest.approx(0.82)
    assert last_active_noise(step, 5.0) == pytest.approx(5 * 0.82 / (1 + 4 * 0.82))  # 0.958
    adaptive = Adaptive(threshold=0.9)
    assert 0.9 <= last_active_noise(adaptive, 1.0) < 0.93 and 0.9 <= last_active_noise(adaptive, 5.0) < 0.93


def test_adaptive_ramp_is_linear_between_threshold_and_threshold_plus_ramp():
    schedule = Adaptive(threshold=0.6, ramp=0.2)
    values = [schedule(StepState.from_step(0, 10, noise_level=level)) for level in (0.5, 0.6, 0.7, 0.8, 0.95)]
    assert values == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_adaptive_schedule_without_a_noise_level_says_what_to_do():
    with pytest.raises(ALGError, match="needs the noise level"):
        Adaptive()(StepState.from_step(0, 10))


@pytest.mark.parametrize(("sigma", "level"), [(0.0, 0.0), (1.0, 0.5), (3.0, 0.75), (math.inf, 1.0)])
def test_noise_level_from_sigma(sigma, level):
    assert noise_level_from_sigma(sigma) == level


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 5, 0.0), "outside a run of 5 steps"),
        ((-1, 5, 0.0), "outside a run"),
        ((0, 0, 0.0), "outside a run of 0 steps"),
        ((1, 5, 1.5), "progress must lie in"),
        ((1, 5, 0.2, -0.1), "noise_level must lie in"),
    ],
)
def test_step_state_rejects_impossible_states(args, message):
    with pytest.raises(ValueError, match=message):
        StepState(*args)


@pytest.mark.parametrize(
    ("schedule_class", "fields", "loc"),
    [
        (Step, {"start": 0.5, "end": 0.2}, ()),
        (Step, {"end": 1.5}, ("end",)),
        (Linear, {"end": 0.0}, ("end",)),
        (Linear, {"start_weight": 2.0}, ("start_weight",)),
        (Exponential, {"rate": -1.0}, ("rate",)),
        (Constant, {"value": True}, ("value",)),
        (Adaptive, {"threshold": 0.9, "ramp": 0.2}, ()),
        (Cosine, {"end": math.nan}, ("end",)),
    ],
)
def test_invalid_schedule_parameters_are_rejected(schedule_class, fields, loc):
    with pytest.raises(ValidationError) as caught:
        schedule_class(**fields)
    assert caught.value.errors()[0]["loc"] == loc
