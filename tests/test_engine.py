"""The engine: the plan of a denoiser call, the merge rule, the run's pairing of calls, conditions and batching."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch

from alg_guidance.config import ALGConfig
from alg_guidance.engine import LowPassedConditions, Run, alg_prediction, merge_inputs, plan_step, resolve_mode
from alg_guidance.engine.batching import split_batch
from alg_guidance.errors import ALGError
from alg_guidance.filters import Downsample, Filter
from alg_guidance.registry import Registry
from alg_guidance.schedules import Constant, Schedule, Step, StepState

generator = torch.Generator().manual_seed(0)
u_orig, c_lp, u_lp, c_orig = (torch.randn(2, 16, 3, 8, 8, dtype=torch.float64, generator=generator) for _ in range(4))
PER_FRAME_SCALE = torch.linspace(1.0, 3.0, 3, dtype=torch.float64).view(1, 1, 3, 1, 1)
OUTPUTS = {"u_orig": u_orig, "c_lp": c_lp, "u_lp": u_lp, "c_orig": c_orig}


def pipeline_cfg(uncond, cond, scale):
    """What every CFG pipeline computes from the two predictions it receives."""
    return uncond + scale * (cond - uncond)


def evaluate(plan):
    """The outputs of a plan's branches, looked up by their names."""
    return [OUTPUTS[str(branch)] for branch in plan.branches]


def test_alg_prediction_is_the_published_rule():
    scale = 5.0
    expected = u_orig + scale * c_lp - scale * u_lp
    torch.testing.assert_close(alg_prediction(u_orig, c_lp, u_lp, scale), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [5.0, 6.0, 1.5, 0.5, PER_FRAME_SCALE])
@pytest.mark.parametrize("roles", [("uncond", "cond"), ("cond", "uncond")])
def test_a_call_asking_for_both_roles_makes_the_callers_own_cfg_produce_alg(scale, roles):
    plan = plan_step(1.0, "alg", roles)
    assert sorted(map(str, plan.branches)) == ["c_lp", "u_lp", "u_orig"]
    predictions = dict(zip(roles, plan.combine(evaluate(plan)), strict=True))
    assert predictions["uncond"] is u_orig
    torch.testing.assert_close(
        pipeline_cfg(predictions["uncond"], predictions["cond"], scale), alg_prediction(u_orig, c_lp, u_lp, scale)
    )


@pytest.mark.parametrize("order", [("cond", "uncond"), ("uncond", "cond")])
@pytest.mark.parametrize("scale", [5.0, 1.01, 0.5, PER_FRAME_SCALE + 1])
def test_calls_asking_for_one_role_each_pair_into_alg_in_either_order(order, scale):
    run = Run(ALGConfig(), "alg")
    held = {}
    for role in order:
        plan = plan_step(1.0, "alg", [role])
        outputs = [value.clone() for value in evaluate(plan)]
        (held[role],) = run.settle(3, plan, outputs)
    torch.testing.assert_close(held["uncond"], u_orig)
    torch.testing.assert_close(
        pipeline_cfg(held["uncond"], held["cond"], scale), alg_prediction(u_orig, c_lp, u_lp, scale)
    )


def test_a_perturbed_call_gets_its_steps_shift_so_a_guidance_formula_with_weights_summing_to_one_is_alg():
    # LTX-2's guidance: u + w (c - u) + s (c - p) with a perturbed cond prediction p (skipped layers)
    c_perturbed_lp = torch.randn(2, 16, 3, 8, 8, dtype=torch.float64, generator=generator)
    run = Run(ALGConfig(), "alg", perturbed_calls=True)
    cfg_plan, perturbed_plan = plan_step(1.0, "alg", ["uncond", "cond"]), plan_step(1.0, "alg", ["cond"])
    with pytest.raises(ALGError, match="came before its step's CFG call"):
        run.settle_perturbed(4, perturbed_plan, [c_perturbed_lp])
    uncond, cond = run.settle(4, cfg_plan, evaluate(cfg_plan))
    perturbed = run.settle_perturbed(4, perturbed_plan, [c_perturbed_lp])
    w, s = 3.0, 1.5
    guided = uncond + w * (cond - uncond) + s * (cond - perturbed)
    expected = u_orig + w * (c_lp - u_lp) + s * (c_lp - c_perturbed_lp)
    torch.testing.assert_close(guided, expected)
    with pytest.raises(ALGError):  # the shift of step 4 is not step 5's
        run.settle_perturbed(5, perturbed_plan, [c_perturbed_lp])


def test_calls_of_different_steps_never_pair():
    run = Run(ALGConfig(), "alg")
    cond_plan, uncond_plan = plan_step(1.0, "alg", ["cond"]), plan_step(1.0, "alg", ["uncond"])
    (cond,) = run.settle(0, cond_plan, [c_lp.clone()])
    run.settle(1, uncond_plan, evaluate(uncond_plan))
    torch.testing.assert_close(cond, c_lp)  # untouched: its own step's uncond call never came


def bf16_alg_in_float64(outputs, scale):
    """ALG from bf16 predictions, computed exactly (float64)."""
    u, c, lp = (value.double() for value in outputs)
    return u + scale * (c - lp)


@pytest.mark.parametrize("scale", [5.0, 1.5, PER_FRAME_SCALE.float()])
def test_bf16_predictions_come_back_so_that_the_callers_cfg_runs_in_float32(scale):
    outputs = [value.to(torch.bfloat16) for value in (u_orig, c_lp, u_lp)]
    uncond, cond = plan_step(1.0, "alg", ["uncond", "cond"]).combine(outputs)
    assert uncond is outputs[0] and cond.dtype == torch.float32
    got = pipeline_cfg(uncond, cond, scale)
    assert got.dtype == torch.float32
    exact = bf16_alg_in_float64(outputs, scale)
    reference = outputs[0] + scale * (outputs[1] - outputs[2])  # the reference code's arithmetic, in bf16
    ours_error, reference_error = (got.double() - exact).abs().max(), (reference.double() - exact).abs().max()
    assert ours_error < 1e-5 * exact.abs().max() and ours_error < reference_error / 100


@pytest.mark.parametrize("order", [("cond", "uncond"), ("uncond", "cond")])
def test_bf16_calls_paired_across_two_calls_are_exact_to_float32_too(order):
    run = Run(ALGConfig(), "alg")
    bf16 = {name: value.to(torch.bfloat16) for name, value in OUTPUTS.items()}
    held = {}
    for role in order:
        plan = plan_step(1.0, "alg", [role])
        (held[role],) = run.settle(0, plan, [bf16[str(branch)].clone() for branch in plan.branches])
    assert held["uncond"].dtype == torch.bfloat16 and held["cond"].dtype == torch.float32
    exact = bf16_alg_in_float64([bf16["u_orig"], bf16["c_lp"], bf16["u_lp"]], 5.0)
    torch.testing.assert_close(pipeline_cfg(held["uncond"], held["cond"], 5.0).double(), exact, rtol=1e-6, atol=1e-5)


def sequential(run, order, outputs, scale):
    """Settle one step's calls asking for one role each, in `order`; the predictions handed back, by role."""
    held = {}
    for role in order:
        plan = plan_step(1.0, "alg", [role])
        (held[role],) = run.settle(3, plan, [outputs[str(branch)].clone() for branch in plan.branches], scale)
    return held


@pytest.mark.parametrize("order", [("cond", "uncond"), ("uncond", "cond")])
@pytest.mark.parametrize("scale", [5.0, 8.0, 1.5, 0.5, -2.0, PER_FRAME_SCALE + 1])
def test_the_uncond_side_form_leaves_cond_alone_and_makes_the_callers_cfg_produce_alg(order, scale):
    held = sequential(Run(ALGConfig(), "alg", shift_target="uncond"), order, OUTPUTS, scale)
    assert torch.equal(held["cond"], c_lp)  # c_lp exactly as the model returned it: a copy of it is as good
    expected_uncond = (u_orig - scale * u_lp) / (1 - scale)  # the rule, written out independently
    torch.testing.assert_close(held["uncond"], expected_uncond, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        pipeline_cfg(held["uncond"], held["cond"], scale), u_orig + scale * c_lp - scale * u_lp, rtol=1e-12, atol=1e-12
    )


def test_the_uncond_side_form_serves_a_caller_that_combines_c_plus_w_times_c_minus_u_at_w_plus_1():
    scale = 7.0  # Cosmos: c + w (c - u) = u + (w + 1) (c - u)
    held = sequential(Run(ALGConfig(), "alg", shift_target="uncond"), ("cond", "uncond"), OUTPUTS, scale + 1)
    cosmos = held["cond"] + scale * (held["cond"] - held["uncond"])
    torch.testing.assert_close(cosmos, u_orig + (scale + 1) * (c_lp - u_lp), rtol=1e-12, atol=1e-12)


def test_the_default_cond_side_form_is_unchanged_and_needs_the_callers_own_cond_tensor():
    run = Run(ALGConfig(), "alg")
    assert run.shift_target == "cond"
    cond_plan, uncond_plan = plan_step(1.0, "alg", ["cond"]), plan_step(1.0, "alg", ["uncond"])
    (cond,) = run.settle(0, cond_plan, [c_lp.clone()], 5.0)
    copied = cond.clone()  # what MotifVideo's .clone() keeps
    (uncond,) = run.settle(0, uncond_plan, evaluate(uncond_plan), 5.0)
    assert uncond is u_orig  # the scale is ignored: the shift goes into the cond tensor, in place
    torch.testing.assert_close(cond, c_lp + u_orig - u_lp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(copied, c_lp)  # a copy taken before the uncond call misses the shift


@pytest.mark.parametrize("scale", [1.0, PER_FRAME_SCALE])  # PER_FRAME_SCALE's first frame is 1
def test_the_uncond_side_form_refuses_a_scale_of_one_and_a_missing_scale(scale):
    run = Run(ALGConfig(), "alg", shift_target="uncond")
    plan = plan_step(1.0, "alg", ["uncond"])
    with pytest.raises(ALGError, match=r"needs a CFG scale w != 1.*mode 'replace'"):
        run.settle(0, plan, evaluate(plan), scale)
    with pytest.raises(ALGError, match="needs the CFG scale w"):
        run.settle(0, plan, evaluate(plan))
    with pytest.raises(ALGError, match="shift_target is 'cond' or 'uncond', got 'both'"):
        Run(ALGConfig(), "alg", shift_target="both")


def test_the_uncond_side_form_passes_through_untouched_where_alg_adds_nothing():
    run = Run(ALGConfig(), "alg", shift_target="uncond")
    for plan in (plan_step(0.0, "alg", ["uncond"]), plan_step(1.0, "alg", ["uncond"], uncond_sees_image=False)):
        (uncond,) = run.settle(0, plan, [u_orig], 1.0)  # no extra branch: the scale is not asked for
        assert uncond is u_orig
    both = plan_step(1.0, "alg", ["uncond", "cond"])  # a batched call: the cond-side combination, at once
    uncond, cond = run.settle(0, both, evaluate(both))
    assert uncond is u_orig
    torch.testing.assert_close(cond, c_lp + u_orig - u_lp)


def test_bf16_uncond_side_predictions_come_back_in_float32_exact_to_float32():
    bf16 = {name: value.to(torch.bfloat16) for name, value in OUTPUTS.items()}
    held = sequential(Run(ALGConfig(), "alg", shift_target="uncond"), ("cond", "uncond"), bf16, 5.0)
    assert held["cond"].dtype == torch.bfloat16 and held["uncond"].dtype == torch.float32
    exact = bf16_alg_in_float64([bf16["u_orig"], bf16["c_lp"], bf16["u_lp"]], 5.0)
    got = pipeline_cfg(held["uncond"], held["cond"], 5.0)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-5 * exact.abs().max().item())


def test_the_plan_passes_through_at_zero_strength_and_low_passes_every_role_in_replace_mode():
    plan = plan_step(0.0, "alg", ["uncond", "cond"])
    assert plan.passes_through and [str(b) for b in plan.branches] == ["u_orig", "c_orig"]
    replace = plan_step(0.5, "replace", ["uncond", "cond"])
    assert [str(b) for b in replace.branches] == ["u_lp", "c_lp"] and replace.combine([u_lp, c_lp]) == (u_lp, c_lp)


def test_without_an_image_in_the_uncond_branch_there_is_no_extra_branch():
    plan = plan_step(1.0, "alg", ["uncond", "cond"], uncond_sees_image=False)
    assert [str(b) for b in plan.branches] == ["u_orig", "c_lp"]
    assert plan.combine([u_orig, c_lp]) == (u_orig, c_lp)


def test_calls_keep_the_callers_batch_and_run_the_extra_branch_alone_unless_batched():
    plan = plan_step(1.0, "alg", ["uncond", "cond"])
    assert plan.calls(batch_branches=True) == ((0, 1, 2),)
    assert plan.calls(batch_branches=False) == ((0, 1), (2,))
    assert plan_step(1.0, "alg", ["cond"]).calls(batch_branches=False) == ((0,),)


@pytest.mark.parametrize("roles", [(), ("cond", "cond"), ("positive",)])
def test_a_plan_for_unknown_or_repeated_roles_is_refused(roles):
    with pytest.raises(ALGError, match="'cond' and/or 'uncond'"):
        plan_step(1.0, "alg", roles)


@pytest.mark.parametrize(
    ("requested", "uses_cfg", "expected"),
    [
        ("auto", True, "alg"),
        ("auto", False, "replace"),
        ("alg", True, "alg"),
        ("replace", True, "replace"),
        ("replace", False, "replace"),
    ],
)
def test_resolve_mode(requested, uses_cfg, expected):
    assert resolve_mode(requested, uses_cfg) == expected


def test_mode_alg_without_cfg_is_refused_with_the_alternative():
    with pytest.raises(ALGError, match="use mode 'auto' or 'replace'"):
        resolve_mode("alg", uses_cfg=False)


def test_merging_branches_broadcasts_batch_one_inputs_and_keeps_shared_ones():
    hidden, text, rope = torch.randn(2, 4), torch.randn(1, 3), torch.randn(5, 5)
    branches = [{"hidden": hidden, "text": text, "rope": rope}, {"hidden": hidden + 1, "text": text * 2, "rope": rope}]
    merged = merge_inputs(branches, 2, per_sample={"hidden", "text"})
    assert torch.equal(merged["hidden"], torch.cat([hidden, hidden + 1]))
    assert torch.equal(merged["text"], torch.cat([text, text, text * 2, text * 2]))
    assert merged["rope"] is rope
    detected = merge_inputs(branches, 2)  # per-sample inputs found by their batch, differing batch-1 ones broadcast
    assert torch.equal(detected["text"], merged["text"]) and detected["rope"] is rope


def test_merging_refuses_shared_inputs_that_differ_and_wrong_batches():
    with pytest.raises(ALGError, match="'rope' differs between branches"):
        merge_inputs([{"rope": torch.zeros(5, 5)}, {"rope": torch.ones(5, 5)}], 2)
    with pytest.raises(ALGError, match="has 3 rows, expected a multiple of the batch 2"):
        merge_inputs([{"x": torch.zeros(3, 1)}, {"x": torch.zeros(3, 1)}], 2, per_sample={"x"})


def test_splitting_a_batched_call_keeps_broadcast_inputs_whole():
    inputs = {"hidden": torch.arange(4.0).view(4, 1), "text": torch.zeros(1, 2), "flag": True}
    _uncond, cond = split_batch(inputs, 2, 4, per_sample={"hidden", "text"})
    assert torch.equal(cond["hidden"], inputs["hidden"][2:]) and cond["text"] is inputs["text"] and cond["flag"]


class CountingDownsample(Downsample):
    """The down-up filter, counting how often it actually filters."""

    kind: Literal["counting-downsample"] = "counting-downsample"
    calls: ClassVar[list[float]] = []

    def filter_planes(self, planes, strength):
        self.calls.append(strength)
        return super().filter_planes(planes, strength)


@pytest.fixture
def counting():
    CountingDownsample.calls = []
    return CountingDownsample(factor=0.4)


def test_conditions_are_filtered_once_per_strength_and_only_the_latest_strength_is_kept(counting):
    conditions = LowPassedConditions(ALGConfig(filter=counting, schedule=Step(end=0.2)))
    condition = torch.randn(1, 20, 3, 12, 16)
    first = conditions(condition, 1.0)
    for _ in range(9):
        assert conditions(condition.clone(), 1.0) is first  # a fresh copy of the same run's condition
    conditions(condition, 0.5)
    assert conditions(condition, 0.0) is condition
    assert counting.calls == [1.0, 0.5]
    torch.testing.assert_close(first, Downsample(factor=0.4)(condition, 1.0), rtol=0, atol=0)
    conditions(condition, 1.0)  # 1.0 was dropped when 0.5 came: a continuous schedule holds one step's conditions
    assert counting.calls == [1.0, 0.5, 1.0]
    assert len(conditions._conditions) == 1


def test_conditions_are_kept_apart_by_key_and_shape(counting):
    conditions = LowPassedConditions(ALGConfig(filter=counting))
    first_frame, last_frame = torch.randn(1, 16, 1, 8, 8), torch.randn(1, 16, 1, 8, 8)
    assert not torch.equal(conditions(first_frame, 1.0, key="first"), conditions(last_frame, 1.0, key="last"))
    conditions(torch.randn(2, 16, 1, 8, 8), 1.0, key="first")
    assert len(counting.calls) == 3


def test_pixel_space_encodes_once_per_strength(counting):
    image = torch.rand(1, 3, 32, 32)
    encoded = []

    def encode(low_pass):
        encoded.append(low_pass(image))
        return encoded[-1].mean(dim=1, keepdim=True)

    conditions = LowPassedConditions(ALGConfig(filter=counting, space="pixel"))
    for _ in range(5):
        latent = conditions.encoded(1.0, encode)
    assert len(encoded) == 1 and latent.shape == (1, 1, 32, 32)
    torch.testing.assert_close(encoded[0], Downsample(factor=0.4)(image, 1.0), rtol=0, atol=0)
    conditions.encoded(0.5, encode)
    assert counting.calls == [1.0, 0.5]


def test_strength_comes_from_the_schedule():
    conditions = LowPassedConditions(ALGConfig(schedule=Step(end=0.2)))
    assert [conditions.strength(StepState.from_step(i, 50)) for i in (0, 9, 10)] == [1.0, 1.0, 0.0]
    assert LowPassedConditions(ALGConfig(schedule=Constant(value=0.25))).strength(StepState.from_step(3, 4)) == 0.25


class Misbehaving(Schedule):
    kind: Literal["misbehaving"] = "misbehaving"

    def __call__(self, state):
        return torch.tensor(0.5) if state.step == 0 else 1.5


def test_a_schedule_returning_a_tensor_or_out_of_range_value_is_reported():
    conditions = LowPassedConditions(ALGConfig(schedule=Misbehaving()))
    with pytest.raises(ALGError, match="schedule 'misbehaving' returned tensor"):
        conditions.strength(StepState.from_step(0, 10))
    with pytest.raises(ALGError, match=r"returned 1\.5 .* a schedule must return a Python float in"):
        conditions.strength(StepState.from_step(1, 10))


class Faulty(Filter):
    """A filter plugin that misbehaves in the way `fault` says."""

    kind: Literal["faulty"] = "faulty"
    fault: str = "nan"

    def __call__(self, x, strength):
        if self.fault == "nan":
            return torch.full_like(x, float("nan"))
        if self.fault == "int64":
            return x.long()
        if self.fault == "float64":
            return x.double()
        if self.fault == "transposed":
            return x.transpose(-1, -2).contiguous()
        if self.fault == "in-place":
            return x.mul_(0.5)
        if self.fault == "view":
            return x[...]
        if self.fault == "list":
            return [x]
        raise AssertionError(self.fault)

    def filter_planes(self, planes, strength):
        raise NotImplementedError


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan", "returned non-finite values"),
        ("int64", "returned dtype torch.int64"),
        ("float64", "returned dtype torch.float64"),
        ("transposed", r"returned shape \(1, 4, 8, 6\) for an input of shape \(1, 4, 6, 8\)"),
        ("in-place", "changed its input in place"),
        ("view", "returned a view of its input"),
        ("list", "returned a list, not a tensor"),
    ],
)
def test_a_filter_plugins_faulty_output_is_refused_naming_the_plugin_and_its_distribution(fault, message):
    registry = Registry(entry_points=False)

    class Plugin:
        @staticmethod
        def alg_register_filters(register):
            register(Faulty)

    from alg_guidance.hookspecs import hookimpl

    Plugin.alg_register_filters = staticmethod(hookimpl(Plugin.alg_register_filters))
    registry.add_plugin(Plugin, "faulty-plugin")
    conditions = LowPassedConditions(ALGConfig(filter=Faulty(fault=fault)), registry)
    condition = torch.randn(1, 4, 6, 8)
    before = condition.clone()
    with pytest.raises(ALGError, match=rf"filter .*faulty.* from plugin 'faulty-plugin' {message}"):
        conditions(condition, 1.0)
    if fault != "in-place":
        assert torch.equal(condition, before)


def test_a_good_filter_is_checked_once_per_run(monkeypatch):
    conditions = LowPassedConditions(ALGConfig())
    checks = []
    monkeypatch.setattr(conditions, "_check_output", lambda *args: checks.append(args[-1]))
    condition = torch.randn(1, 4, 6, 8)
    for strength in (1.0, 0.5, 1.0, 0.5):
        conditions(condition, strength)
    assert checks == [1.0]
