"""Pipelines that share components: each samples with its own config, or none, whatever its siblings do.

`Pipeline(**pipe.components)` and `Pipeline.from_pipe(pipe)` give pipelines that share the very same transformer,
VAE and scheduler objects (the pattern of diffusers' own `test_encode_prompt_works_in_isolation`).
"""

from __future__ import annotations

import copy
import gc
import inspect
import threading
import weakref

import pytest
import torch

import alg_guidance as alg
from alg_guidance.adapters.base import Capture
from alg_guidance.engine import Run
from alg_guidance.errors import ALGError
from alg_guidance.integrations.diffusers.run import PipelineRun
from tests.support.compat import CONFIG, assert_no_alg_left, guided, record_run, untouched
from tests.support.families import all_families

FAMILIES = all_families()
NAMES = pytest.mark.parametrize("name", FAMILIES)


def from_components(pipe, **changes):
    """`type(pipe)(**pipe.components)`, with the pipeline's own config options (Wan 2.2's `boundary_ratio`)."""
    parameters = inspect.signature(type(pipe).__init__).parameters
    options = {name: pipe.config[name] for name in parameters if name not in pipe.components and name in pipe.config}
    return type(pipe)(**{**pipe.components, **changes}, **options)


SIBLINGS = {
    "Pipeline(**pipe.components)": from_components,
    "Pipeline.from_pipe(pipe)": lambda pipe: type(pipe).from_pipe(pipe),
}
SIBLING = pytest.mark.parametrize("make_sibling", SIBLINGS.values(), ids=SIBLINGS.keys())
OTHER = CONFIG.merge({"filter": {"factor": 0.25}})


def shares_denoisers(pipe, sibling, family) -> bool:
    return all(getattr(pipe, name) is getattr(sibling, name) for name in family.denoisers)


@NAMES
@SIBLING
def test_a_sibling_that_did_not_enable_alg_samples_untouched_before_during_and_after(name, make_sibling):
    family = FAMILIES[name]
    pipe = family.make()
    sibling = make_sibling(pipe)
    assert shares_denoisers(pipe, sibling, family)
    with alg.enable(pipe, CONFIG):
        before = record_run(family, sibling)
        assert torch.equal(family.run(pipe), guided(name).frames)
        after = record_run(family, sibling)
        with pytest.raises(ALGError, match="not enabled"):
            alg.disable(sibling)
    for run in (before, after):
        assert torch.equal(run.frames, untouched(name).frames)
        assert run.evaluations == untouched(name).evaluations
    assert_no_alg_left(pipe, family)
    assert_no_alg_left(sibling, family)


@NAMES
def test_siblings_each_sample_with_their_own_config(name):
    family = FAMILIES[name]
    pipe = family.make()
    sibling = from_components(pipe)
    reference = family.make()
    with alg.enable(reference, OTHER):
        other_frames = family.run(reference)
    assert not torch.equal(other_frames, guided(name).frames)
    with alg.enable(pipe, CONFIG), alg.enable(sibling, OTHER):
        for _ in range(2):  # alternating runs keep no state of one another
            assert torch.equal(family.run(sibling), other_frames)
            assert torch.equal(family.run(pipe), guided(name).frames)
        alg.disable(sibling)
        assert torch.equal(family.run(sibling), untouched(name).frames)
        assert torch.equal(family.run(pipe), guided(name).frames)
    assert_no_alg_left(pipe, family)


@NAMES
def test_an_enabled_pipeline_dropped_without_disable_is_freed_and_its_hooks_go(name):
    family = FAMILIES[name]
    pipe = family.make()
    sibling = from_components(pipe)
    alg.enable(pipe, CONFIG.merge({"space": "pixel"}) if name.startswith("wan2.1") else CONFIG)
    family.run(pipe)
    dropped = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert dropped() is None, "the enabled pipeline was kept alive"
    assert_no_alg_left(sibling, family)
    assert torch.equal(family.run(sibling), untouched(name).frames)


@pytest.mark.parametrize("name", ["wan2.1", "cogvideox"])
def test_pipelines_sharing_a_transformer_sample_concurrently_from_threads(name):
    """Each thread's pipeline call guides only its own denoiser calls, with the cache context of its own calls.

    The pipelines share their transformer and text encoder; each has its own scheduler and VAE, which keep state
    during a call (diffusers needs that, with or without ALG).
    """
    family = FAMILIES[name]
    pipe = family.make()
    pipelines = [
        from_components(pipe, scheduler=copy.deepcopy(pipe.scheduler), vae=copy.deepcopy(pipe.vae)) for _ in range(4)
    ]
    expected = [guided(name).frames, untouched(name).frames] * 2
    handles = [alg.enable(pipeline, CONFIG) for pipeline in pipelines[::2]]
    results: dict[int, torch.Tensor] = {}
    barrier = threading.Barrier(len(pipelines))

    def sample(index: int) -> None:
        barrier.wait()
        results[index] = family.run(pipelines[index])

    threads = [threading.Thread(target=sample, args=(index,)) for index in range(len(pipelines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, want in enumerate(expected):
        assert torch.equal(results[index], want), f"pipeline {index} sampled wrongly"
    for handle in handles:
        handle.disable()
    for pipeline in pipelines:
        assert_no_alg_left(pipeline, family)


def test_a_cache_context_set_from_another_thread_does_not_change_which_branch_a_call_is():
    """diffusers keeps a denoiser's cache context on the module; ALG reads each thread's own."""
    pipe = FAMILIES["wan2.1"].make()
    transformer = pipe.transformer
    entered, release = threading.Event(), threading.Event()

    def hold_uncond_context() -> None:
        with transformer.cache_context("uncond"):
            entered.set()
            release.wait()

    other = threading.Thread(target=hold_uncond_context)

    def in_the_first_call(module, args) -> None:  # after the pipeline set its "cond" context, before ALG reads it
        if not entered.is_set():
            other.start()
            entered.wait()

    handle = transformer.register_forward_pre_hook(in_the_first_call)
    try:
        with alg.enable(pipe, CONFIG):
            frames = FAMILIES["wan2.1"].run(pipe)
    finally:
        release.set()
        other.join()
        handle.remove()
    assert torch.equal(frames, guided("wan2.1").frames)


@NAMES
def test_nothing_of_a_run_outlives_it(name):
    """Pixel space records the run's images and latents; they are dropped when the pipeline call returns."""
    family = FAMILIES[name]
    pipe = family.make()
    pixel = alg.default_registry().adapter(family.adapter).pixel_space
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"}) if pixel else CONFIG) as handle:
        family.run(pipe)
        gc.collect()
        left = [type(thing).__name__ for thing in gc.get_objects() if type(thing) in (Capture, PipelineRun, Run)]
        assert left == [], f"left after the run: {left}"
        assert not [value for value in vars(handle).values() if isinstance(value, torch.Tensor)]
