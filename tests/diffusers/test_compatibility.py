"""ALG alongside the rest of diffusers: offloading, caches, compilation, LoRA, failures mid-run and bad input.

Each test applies a real diffusers feature to the tiny pipeline of every family (`all_families()`) and compares
with reference runs of fresh pipelines (`tests.support.compat`): the ALG run without the feature, or the run
without ALG. Where diffusers itself cannot run a feature on a pipeline, found by trying it without ALG, the test
is skipped with diffusers' reason.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from diffusers.hooks import FasterCacheConfig, PyramidAttentionBroadcastConfig
from diffusers.hooks.first_block_cache import FBCBlockHook, FBCHeadBlockHook
from diffusers.hooks.group_offloading import GroupOffloadingHook, ModuleGroup
from diffusers.hooks.mag_cache import MagCacheBlockHook, MagCacheHeadHook
from pydantic import ValidationError

import alg_guidance as alg
from alg_guidance.errors import ALGError, UnknownPluginError
from alg_guidance.integrations.diffusers import run as run_module
from alg_guidance.integrations.diffusers.hook import HOOK_NAME, ALGHook
from alg_guidance.integrations.diffusers.offload import return_to_denoiser as return_to
from alg_guidance.registry import default_registry
from tests.support.compat import (
    COMPILE_BACKEND,
    CONFIG,
    FEATURES,
    alg_hooked,
    assert_no_alg_left,
    block_counts,
    contexts_seen,
    denoisers,
    diffusers_refusal,
    guided,
    guided_with_fused_lora,
    hooks_on,
    lora_state_dict,
    modules_with,
    record_run,
    skip_unless_diffusers_runs,
    untouched,
)
from tests.support.families import Family, all_families
from tests.support.recording import assert_prediction, recording

FAMILIES = all_families()
ORDERS = ["before ALG", "after ALG"]
NAMES = pytest.mark.parametrize("name", FAMILIES)
BOTH_ORDERS = pytest.mark.parametrize("order", ORDERS)


def assert_same_run(run, reference) -> None:
    """Bit-identical output from the same model evaluations."""
    assert run.evaluations == reference.evaluations
    assert torch.equal(run.frames, reference.frames)


def enable_around(pipe: Any, order: str, apply) -> alg.ALGHandle:
    """Enable ALG on `pipe` and call `apply()` before or after, as `order` says."""
    if order == "before ALG":
        apply()
    handle = alg.enable(pipe, CONFIG)
    if order == "after ALG":
        apply()
    return handle


# Model CPU offload


def offloaded(pipe: Any, family: Family) -> bool:
    """Whether model CPU offload's accelerate hooks are on the pipeline's denoisers."""
    return bool(pipe._all_hooks) and all(hasattr(denoiser, "_hf_hook") for denoiser in denoisers(pipe, family))


@NAMES
@BOTH_ORDERS
def test_model_cpu_offload_keeps_alg_on_every_run(name, order):
    family = FAMILIES[name]
    pipe = family.make()
    handle = enable_around(pipe, order, lambda: pipe.enable_model_cpu_offload(device="cpu"))
    # Offload puts its hooks back at the end of every run: the second run shows that ALG's hook outlived that.
    for _ in range(2):
        assert_same_run(record_run(family, pipe), guided(name))
    assert offloaded(pipe, family)
    handle.disable()
    assert offloaded(pipe, family)
    assert_no_alg_left(pipe, family)
    never_enabled = family.make()
    never_enabled.enable_model_cpu_offload(device="cpu")
    assert torch.equal(family.run(pipe), family.run(never_enabled))


PIXEL_FAMILIES = [name for name, family in FAMILIES.items() if default_registry().adapter(family.adapter).pixel_space]


@pytest.mark.parametrize("name", PIXEL_FAMILIES)
def test_model_cpu_offload_with_pixel_space_puts_the_denoiser_back_after_encoding(name, monkeypatch):
    """Encoding mid-call runs the VAE's offload hook, which offloads the denoiser; ALG moves it back."""
    family = FAMILIES[name]
    config = CONFIG.merge({"space": "pixel"})
    plain = family.make()
    with alg.enable(plain, config):
        expected = record_run(family, plain)
    returns = []
    monkeypatch.setattr(run_module, "return_to_denoiser", lambda *args: returns.append(args) or return_to(*args))
    pipe = family.make()
    pipe.enable_model_cpu_offload(device="cpu")
    with alg.enable(pipe, config):
        assert_same_run(record_run(family, pipe), expected)
    assert len(returns) == 1  # one distinct strength, one encode
    assert offloaded(pipe, family)


# Group offloading


@NAMES
@BOTH_ORDERS
def test_group_offloading_gives_the_alg_output(name, order, monkeypatch):
    skip_unless_diffusers_runs(name, "group offloading")
    family = FAMILIES[name]
    pipe = family.make()
    handle = enable_around(pipe, order, lambda: [FEATURES["group offloading"](d) for d in denoisers(pipe, family)])
    onloads = []
    onload = ModuleGroup.onload_

    def counted_onload(group):
        onloads.append(group)
        return onload(group)

    monkeypatch.setattr(ModuleGroup, "onload_", counted_onload)
    assert_same_run(record_run(family, pipe), guided(name))
    assert onloads, "group offloading loaded no group"
    handle.disable()
    for denoiser in denoisers(pipe, family):
        assert HOOK_NAME not in hooks_on(denoiser)
        assert modules_with(denoiser, GroupOffloadingHook), "group offloading went with ALG"
    assert torch.equal(family.run(pipe), untouched(name).frames)


# FirstBlockCache and MagCache

HEAD_AND_TAIL = {"FirstBlockCache": (FBCHeadBlockHook, FBCBlockHook), "MagCache": (MagCacheHeadHook, MagCacheBlockHook)}
EXACT_CACHES = ["FirstBlockCache that never skips", "MagCache calibration"]
SKIPPING_CACHES = ["FirstBlockCache that skips", "MagCache that skips"]


@contextlib.contextmanager
def observed_cache(pipe: Any, family: Family, cache: str) -> Iterator[tuple[list, list]]:
    """Record the context and batch of each call of the cache's head block, and count the tail block's calls."""
    head_class, block_class = HEAD_AND_TAIL[cache.split()[0]]
    seen, tails = [], []
    with contextlib.ExitStack() as stack:
        for denoiser in denoisers(pipe, family):
            [(head, head_hook)] = modules_with(denoiser, head_class)
            tail, _ = modules_with(denoiser, block_class)[-1]
            stack.enter_context(contexts_seen(head, lambda hook=head_hook: hook.state_manager, seen))
            tails.append(stack.enter_context(block_counts(tail)))
        yield seen, tails


def assert_contexts_keep_their_batch(seen: list[tuple[str | None, int]], name: str) -> None:
    """Each cache context sees one batch size; ALG's extra branches run under `<name>_alg` contexts of their own.

    A pipeline that names none of its calls leaves a cache one state for all of them, ALG or not.
    """
    batches = defaultdict(set)
    for context, batch in seen:
        batches[context].add(batch)
    assert all(len(sizes) == 1 for sizes in batches.values()), dict(batches)
    if not untouched(name).contexts:
        return
    extra = {context for context in batches if context.endswith("_alg")}
    assert {context.removesuffix("_alg") for context in extra} <= set(batches) - extra
    adds_branches = sum(guided(name).evaluations) > sum(untouched(name).evaluations)
    assert bool(extra) == adds_branches, f"extra-branch contexts {extra}, ALG adds branches: {adds_branches}"


@NAMES
@pytest.mark.parametrize("cache", EXACT_CACHES)
def test_a_cache_that_never_skips_gives_the_alg_output(name, cache):
    skip_unless_diffusers_runs(name, cache)
    family = FAMILIES[name]
    pipe = family.make()
    for denoiser in denoisers(pipe, family):
        FEATURES[cache](denoiser)
    with alg.enable(pipe, CONFIG), observed_cache(pipe, family, cache) as (seen, tails):
        run = record_run(family, pipe)
    assert_contexts_keep_their_batch(seen, name)
    assert all(tail.computed == tail.calls for tail in tails)
    # A cache makes ALG run its extra branch as a call of its own: exactly the unbatched ALG run.
    assert_same_run(run, guided(name, batch_branches=False))
    assert_prediction(run.frames, guided(name).frames)


@NAMES
@pytest.mark.parametrize("cache", SKIPPING_CACHES)
def test_a_cache_that_skips_runs_deterministically_with_alg(name, cache):
    skip_unless_diffusers_runs(name, cache)
    family = FAMILIES[name]
    pipe = family.make()
    for denoiser in denoisers(pipe, family):
        FEATURES[cache](denoiser)
    with alg.enable(pipe, CONFIG):
        with observed_cache(pipe, family, cache) as (seen, tails):
            first = family.run(pipe)
        second = family.run(pipe)
    assert_contexts_keep_their_batch(seen, name)
    assert sum(tail.computed for tail in tails) < sum(tail.calls for tail in tails), "the cache skipped nothing"
    assert torch.equal(first, second)
    assert first.isfinite().all()


def test_a_cache_applied_through_diffusers_hooks_also_gets_separate_branches():
    """`diffusers.hooks.apply_first_block_cache` leaves `is_cache_enabled` false; ALG must still see the cache."""
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    name = next(name for name in FAMILIES if diffusers_refusal(name, "FirstBlockCache that skips") is None)
    family = FAMILIES[name]
    enabled, applied = family.make(), family.make()
    for denoiser in denoisers(enabled, family):
        denoiser.enable_cache(FirstBlockCacheConfig(threshold=1e3))
    for denoiser in denoisers(applied, family):
        apply_first_block_cache(denoiser, FirstBlockCacheConfig(threshold=1e3))
    with alg.enable(enabled, CONFIG):
        expected = family.run(enabled)
    with alg.enable(applied, CONFIG):
        assert torch.equal(family.run(applied), expected)


# Compilation


@NAMES
@BOTH_ORDERS
def test_regional_compilation_gives_the_alg_output(name, order):
    family = FAMILIES[name]
    pipe = family.make()
    for denoiser in denoisers(pipe, family):
        if not getattr(denoiser, "_repeated_blocks", None):
            pytest.skip(f"{type(denoiser).__name__} declares no _repeated_blocks for compile_repeated_blocks")
    handle = enable_around(
        pipe, order, lambda: [d.compile_repeated_blocks(backend=COMPILE_BACKEND) for d in denoisers(pipe, family)]
    )
    graph_runs = COMPILE_BACKEND.runs
    assert_same_run(record_run(family, pipe), guided(name))
    assert COMPILE_BACKEND.runs > graph_runs, "no compiled block ran"
    handle.disable()
    assert torch.equal(family.run(pipe), untouched(name).frames)


def first_family_per_guidance() -> list[str]:
    """One family for each way of running CFG (batched, sequential)."""
    firsts: dict[str, str] = {}
    for name, family in FAMILIES.items():
        firsts.setdefault(default_registry().adapter(family.adapter).guidance, name)
    return list(firsts.values())


@pytest.mark.parametrize("name", first_family_per_guidance())
def test_whole_model_compilation_compiles_the_denoiser_once(name):
    """ALG's control flow stays outside the compiled graphs: the second run compiles nothing new."""
    torch._dynamo.reset()  # recompile limits reached by earlier tests' frames would hide or add compilations
    family = FAMILIES[name]
    pipe = family.make()
    handle = alg.enable(pipe, CONFIG)
    for denoiser in denoisers(pipe, family):
        denoiser.compile(backend=COMPILE_BACKEND)
    first = record_run(family, pipe)
    compiled, graph_runs = COMPILE_BACKEND.compiled, COMPILE_BACKEND.runs
    second = record_run(family, pipe)
    assert COMPILE_BACKEND.compiled == compiled, "the second run recompiled"
    assert COMPILE_BACKEND.runs > graph_runs
    for run in (first, second):
        assert run.evaluations == guided(name).evaluations
        assert_prediction(run.frames, guided(name).frames)
    handle.disable()
    assert_prediction(family.run(pipe), untouched(name).frames)


# LoRA


@NAMES
@pytest.mark.parametrize("order", ["LoRA before ALG", "LoRA after ALG"])
def test_lora_loaded_before_or_after_alg_is_used_by_every_branch(name, order, tmp_path):
    family = FAMILIES[name]
    pipe = family.make()
    if not hasattr(pipe, "load_lora_weights"):
        pytest.skip(f"{type(pipe).__name__} has no LoRA loader")
    handle = enable_around(
        pipe,
        order.removeprefix("LoRA "),
        lambda: pipe.load_lora_weights(dict(lora_state_dict(name)), adapter_name="compat"),
    )
    transformer = getattr(pipe, pipe.transformer_name)
    assert "compat" in transformer.peft_config
    run = record_run(family, pipe)
    assert run.evaluations == guided(name).evaluations
    assert not torch.equal(run.frames, guided(name).frames), "the LoRA changed nothing"
    # ALG on the LoRA-carrying transformer equals ALG on a plain transformer with the LoRA merged into its weights.
    assert_prediction(run.frames, guided_with_fused_lora(name).frames)

    # The transformer is still the real model.
    assert transformer.config == getattr(family.make(), pipe.transformer_name).config
    transformer.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file()
    if hasattr(transformer, "cache_context"):  # transformers without diffusers' CacheMixin have none (Sana-Video)
        with transformer.cache_context("cond"):
            pass

    pipe.unload_lora_weights()
    assert torch.equal(family.run(pipe), guided(name).frames)
    handle.disable()
    assert torch.equal(family.run(pipe), untouched(name).frames)


# FasterCache and PyramidAttentionBroadcast

REFUSED = {
    "FasterCache": lambda: FasterCacheConfig(current_timestep_callback=lambda: 500),
    "PyramidAttentionBroadcast": lambda: PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: 500
    ),
}


def apply_refused_cache(pipe: Any, family: Family, cache: str) -> None:
    """Enable `cache` on the denoisers, skipping the test if diffusers cannot or finds nothing to cache."""
    for denoiser in denoisers(pipe, family):
        if not hasattr(denoiser, "enable_cache"):
            pytest.skip(f"{type(denoiser).__name__} has no enable_cache")
        before = sum(len(hooks_on(module)) for module in denoiser.modules())
        try:
            denoiser.enable_cache(REFUSED[cache]())
        except Exception as error:  # diffusers' own refusal, before ALG is involved
            pytest.skip(f"diffusers cannot apply {cache} to {type(denoiser).__name__}: {error!r}")
        if sum(len(hooks_on(module)) for module in denoiser.modules()) == before:
            pytest.skip(f"{cache} finds nothing to cache in {type(denoiser).__name__}")


@NAMES
@pytest.mark.parametrize("cache", REFUSED)
def test_a_two_branch_cache_enabled_first_is_refused_at_enable(name, cache):
    family = FAMILIES[name]
    pipe = family.make()
    apply_refused_cache(pipe, family, cache)
    with pytest.raises(ALGError, match=f"ALG cannot run with {cache} .* use FirstBlockCache or MagCache"):
        alg.enable(pipe, CONFIG)
    assert_no_alg_left(pipe, family)
    for denoiser in denoisers(pipe, family):
        denoiser.disable_cache()
    with alg.enable(pipe, CONFIG):
        assert torch.equal(family.run(pipe), guided(name).frames)


@NAMES
@pytest.mark.parametrize("cache", REFUSED)
def test_a_two_branch_cache_enabled_after_alg_is_refused_before_any_evaluation(name, cache):
    family = FAMILIES[name]
    pipe = family.make()
    handle = alg.enable(pipe, CONFIG)
    apply_refused_cache(pipe, family, cache)
    with (
        recording(pipe, family.denoisers, family.counted) as record,
        pytest.raises(ALGError, match=f"ALG cannot run with {cache} .* use FirstBlockCache or MagCache"),
    ):
        family.run(pipe)
    assert record.evaluations == []
    assert alg_hooked(pipe, family) == list(family.denoisers)
    for denoiser in denoisers(pipe, family):
        denoiser.disable_cache()
    assert torch.equal(family.run(pipe), guided(name).frames)
    handle.disable()


# Failures mid-run


def stop_at_step_1(pipe, step, timestep, callback_kwargs):
    if step == 1:
        raise RuntimeError("stopped by the callback at step 1")
    return callback_kwargs


@contextlib.contextmanager
def failing(pipe: Any, family: Family, failure: str) -> Iterator[dict[str, Any]]:
    """Arrange `failure` for the next run; yields the run's extra arguments."""
    if failure == "callback error at step 1":
        if "callback_on_step_end" not in inspect.signature(pipe.__call__).parameters:
            pytest.skip(f"{type(pipe).__name__} takes no callback_on_step_end")
        yield {"callback_on_step_end": stop_at_step_1}
        return
    # KeyboardInterrupt inside the second model evaluation: for sequential CFG, the uncond call of step 0,
    # while the cond prediction waits for its correction.
    evaluations = []

    def interrupt(*_):
        evaluations.append(1)
        if len(evaluations) == 2:
            raise KeyboardInterrupt

    counted = getattr(pipe, family.denoisers[0]).get_submodule(family.counted)
    handle = counted.register_forward_pre_hook(interrupt)
    try:
        yield {}
    finally:
        handle.remove()


FAILURES = {"callback error at step 1": RuntimeError, "KeyboardInterrupt mid-step": KeyboardInterrupt}


@NAMES
@pytest.mark.parametrize("failure", FAILURES)
def test_after_a_failed_run_the_next_run_is_a_fresh_alg_run(name, failure):
    family = FAMILIES[name]
    pipe = family.make()
    handle = alg.enable(pipe, CONFIG)
    with failing(pipe, family, failure) as overrides, pytest.raises(FAILURES[failure]):
        family.run(pipe, **overrides)
    assert_same_run(record_run(family, pipe), guided(name))
    handle.disable()


@NAMES
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failure_inside_the_with_block_leaves_the_pipeline_untouched(name, failure):
    family = FAMILIES[name]
    pipe = family.make()
    with failing(pipe, family, failure) as overrides, pytest.raises(FAILURES[failure]), alg.enable(pipe, CONFIG):
        family.run(pipe, **overrides)
    assert_no_alg_left(pipe, family)
    assert_same_run(record_run(family, pipe), untouched(name))


# Extra branches as calls of their own (batch_branches=False)


@NAMES
def test_unbatched_branches_are_calls_of_the_pipelines_own_size(name):
    family = FAMILIES[name]
    pipe = family.make()
    calls = []
    with alg.enable(pipe, CONFIG.merge({"batch_branches": False})), contextlib.ExitStack() as stack:
        for denoiser in denoisers(pipe, family):
            hook = hooks_on(denoiser)[HOOK_NAME]
            assert isinstance(hook, ALGHook)
            counted = denoiser.get_submodule(family.counted)
            stack.enter_context(contexts_seen(counted, lambda hook=hook: hook.cache_context, calls))
        run = record_run(family, pipe)
    plain, batched = untouched(name).evaluations, guided(name).evaluations
    assert sum(run.evaluations) == sum(batched), "not the same work as the batched run"
    assert max(run.evaluations) == max(plain), "an evaluation larger than the pipeline's own"
    if untouched(name).contexts:  # the pipeline names its calls, and ALG names its extra ones after them
        own = [batch for context, batch in calls if not context.endswith("_alg")]
        extra = [batch for context, batch in calls if context.endswith("_alg")]
        assert sorted(own) == sorted(plain)
        assert len(set(extra)) <= 1, "extra branches of different sizes"
        assert sum(extra) == sum(batched) - sum(plain)
    assert_prediction(run.frames, guided(name).frames)


# Bad input at the public boundary


def tiny_text_to_video() -> WanPipeline:
    """A Wan text-to-video pipeline: no image condition, so no adapter serves it."""
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    return WanPipeline(
        tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler()
    )


FIRST = next(iter(FAMILIES))


def test_a_pipeline_no_adapter_serves_is_refused_with_the_supported_ones():
    pipe = tiny_text_to_video()
    with pytest.raises(ALGError, match="no ALG adapter serves WanPipeline; supported pipelines: ") as error:
        alg.enable(pipe, CONFIG)
    for family in FAMILIES.values():
        assert type(family.make()).__name__ in str(error.value)
    assert HOOK_NAME not in hooks_on(pipe.transformer)
    with pytest.raises(ALGError, match="not enabled"):
        alg.disable(pipe)


def test_enabling_twice_is_refused_and_keeps_the_first():
    family = FAMILIES[FIRST]
    pipe = family.make()
    handle = alg.enable(pipe, CONFIG)
    with pytest.raises(ALGError, match=r"already enabled.*alg\.disable\(pipe\)"):
        alg.enable(pipe, CONFIG.merge({"filter.factor": 0.25}))
    for denoiser in denoisers(pipe, family):
        assert list(hooks_on(denoiser)).count(HOOK_NAME) == 1
    assert torch.equal(family.run(pipe), guided(FIRST).frames)
    handle.disable()
    assert_no_alg_left(pipe, family)


def test_disabling_a_pipeline_never_enabled_is_refused():
    family = FAMILIES[FIRST]
    pipe = family.make()
    with pytest.raises(ALGError, match=f"ALG is not enabled on this {type(pipe).__name__}"):
        alg.disable(pipe)
    assert torch.equal(family.run(pipe), untouched(FIRST).frames)


def test_an_unknown_adapter_name_lists_the_available_ones():
    family = FAMILIES[FIRST]
    pipe = family.make()
    with pytest.raises(UnknownPluginError, match=f"unknown adapter 'no-such-model'; available: .*{family.adapter}"):
        alg.enable(pipe, CONFIG, adapter="no-such-model")
    assert_no_alg_left(pipe, family)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"filter": {"kind": "downsample", "factor": 1.5}}, "factor"),
        ({"schedule": {"kind": "step", "end": 2.0}}, "end"),
        ({"mode": "sometimes"}, "mode"),
        ({"batch_branches": "no"}, "batch_branches"),
        ({"filter": {"kind": "no-such-filter"}}, "kind"),
        ({"fliter": {"kind": "downsample"}}, "fliter"),
    ],
)
def test_an_invalid_config_names_the_field_and_applies_nothing(config, field):
    family = FAMILIES[FIRST]
    pipe = family.make()
    with pytest.raises(ValidationError) as error:
        alg.enable(pipe, config)
    assert any(field in (str(part) for part in detail["loc"]) for detail in error.value.errors()), error.value
    assert_no_alg_left(pipe, family)
    assert torch.equal(family.run(pipe), untouched(FIRST).frames)


EXPLICIT_MISMATCHES = [
    ("wan2.1", "cogvideox", "it serves CogVideoXImageToVideoPipeline, not WanImageToVideoPipeline"),
    ("wan2.1", "svd", "it serves StableVideoDiffusionPipeline, not WanImageToVideoPipeline"),
    ("wan2.1", "wan2.2", "it serves Wan 2.2 A14B, with two experts"),
    ("wan2.1", "wan2.2-ti2v", "it serves Wan 2.2 TI2V-5B"),
    ("wan2.2", "wan2.1", "served by 'wan2.2'"),
    ("hunyuanvideo", "hunyuanvideo-33ch", "image_condition_type='latent_concat'"),
    ("ltx-video", "ltx-video-condition", "it serves LTXConditionPipeline, not LTXImageToVideoPipeline"),
]


@pytest.mark.parametrize(("name", "adapter", "why"), EXPLICIT_MISMATCHES)
def test_an_explicit_adapter_that_cannot_serve_the_pipeline_is_refused_at_enable(name, adapter, why):
    family = FAMILIES[name]
    pipe = family.make()
    with pytest.raises(ALGError, match=rf"adapter '{adapter}' cannot serve this {type(pipe).__name__}: ") as error:
        alg.enable(pipe, CONFIG, adapter=adapter)
    assert why in str(error.value)
    assert f"'{family.adapter}' would serve it" in str(error.value)
    assert_no_alg_left(pipe, family)
    assert torch.equal(family.run(pipe), untouched(name).frames)


def test_a_text_to_video_pipeline_is_refused_even_with_an_explicit_adapter():
    pipe = tiny_text_to_video()
    with pytest.raises(
        ALGError, match=r"adapter 'wan2\.1' cannot serve this WanPipeline: it serves WanImageToVideoPipeline"
    ):
        alg.enable(pipe, CONFIG, adapter="wan2.1")
    assert not hasattr(pipe.transformer, "_diffusers_hook")


def test_an_image_to_video_pipeline_holding_a_text_to_video_transformer_is_refused():
    family = FAMILIES["wan2.1"]
    pipe = type(family.make())(**{**family.make().components, "transformer": tiny_text_to_video().transformer})
    with pytest.raises(ALGError, match="a text-to-video checkpoint, with no image condition to low-pass"):
        alg.enable(pipe, CONFIG)


def test_a_look_alike_class_that_is_no_diffusers_pipeline_is_refused():
    family = FAMILIES["wan2.1"]
    look_alike = type("WanImageToVideoPipeline", (), dict(vars(family.make())))()
    with pytest.raises(ALGError, match="this WanImageToVideoPipeline is not a diffusers DiffusionPipeline"):
        alg.enable(look_alike, CONFIG)


@pytest.mark.parametrize("name", ["wan2.1", "ltx-video", "cogvideox", "svd"])
def test_a_pipeline_without_its_denoiser_is_refused(name):
    family = FAMILIES[name]
    pipe = family.make()
    for denoiser in family.denoisers:
        setattr(pipe, denoiser, None)
    with pytest.raises(ALGError, match="has no denoiser module"):
        alg.enable(pipe, CONFIG)


@pytest.mark.parametrize("thing", [None, "WanImageToVideoPipeline", 3, torch.nn.Linear(2, 2), [1]])
def test_what_is_not_a_pipeline_is_refused_by_enable_and_disable(thing):
    with pytest.raises(ALGError):
        alg.enable(thing, CONFIG)
    with pytest.raises(ALGError, match=r"alg\.disable takes a diffusers pipeline that ALG was enabled on|not enabled"):
        alg.disable(thing)


@NAMES
@pytest.mark.parametrize("cache", REFUSED)
def test_a_two_branch_cache_runs_untouched_when_the_schedule_never_filters(name, cache):
    """The refusal is about ALG's third branch: a schedule at zero at every step adds none, so nothing is refused."""
    family = FAMILIES[name]
    cached = family.make()
    apply_refused_cache(cached, family, cache)
    try:
        expected = record_run(family, cached)
    except Exception as error:  # diffusers' own failure, before ALG is involved
        pytest.skip(f"diffusers cannot run {cache} on {type(cached).__name__} even without ALG: {error!r}")
    pipe = family.make()
    apply_refused_cache(pipe, family, cache)
    with alg.enable(pipe, CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})):
        run = record_run(family, pipe)
    assert torch.equal(run.frames, expected.frames) and run.evaluations == expected.evaluations
