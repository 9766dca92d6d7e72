"""Shared pieces of the compatibility tests: reference runs, probes of what diffusers supports, and observers.

Reference runs are cached per family, so that the many tests comparing against them pay for each only once;
callers must not modify the tensors they get.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.integrations.diffusers.hook import HOOK_NAME

from .families import Family, all_families
from .recording import recording

# 4 steps at progress 0, 1/3, 2/3, 1: the first three are filtered, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": 0.4}, schedule={"kind": "step", "end": 0.7})
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_query", "to_key", "to_value")


@dataclass(frozen=True)
class Reference:
    """One run of a fresh pipeline.

    Attributes:
        frames: The latent video.
        evaluations: The batch of every model evaluation, in order.
        contexts: The name of every cache context entered on a denoiser, in order.
    """

    frames: torch.Tensor
    evaluations: tuple[int, ...]
    contexts: tuple[str, ...]


def record_run(family: Family, pipe: Any, **overrides: Any) -> Reference:
    """Run `pipe` once, counting its model evaluations and the cache contexts entered."""
    with recording(pipe, family.denoisers, family.counted) as record, entered_contexts(pipe, family) as contexts:
        frames = family.run(pipe, **overrides)
    return Reference(frames, tuple(record.evaluations), tuple(contexts))


@contextlib.contextmanager
def entered_contexts(pipe: Any, family: Family) -> Iterator[list[str]]:
    """Record the name of every `cache_context` entered on the denoisers of `pipe` (by the pipeline, or by ALG)."""
    names: list[str] = []
    modules = [module for module in denoisers(pipe, family) if hasattr(module, "cache_context")]
    for module in modules:
        enter = module.cache_context

        def spy(name: str, *args: Any, enter: Callable = enter, **kwargs: Any) -> Any:
            names.append(name)
            return enter(name, *args, **kwargs)

        module.cache_context = spy
    try:
        yield names
    finally:
        for module in modules:
            del module.cache_context


@functools.cache
def untouched(name: str) -> Reference:
    """A run of a fresh pipeline of family `name`, without ALG."""
    family = all_families()[name]
    return record_run(family, family.make())


@functools.cache
def guided(name: str, batch_branches: bool = True) -> Reference:
    """A run of a fresh pipeline of family `name` with ALG (`CONFIG`), checked to differ from `untouched`."""
    family = all_families()[name]
    pipe = family.make()
    with alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})):
        reference = record_run(family, pipe)
    assert not torch.equal(reference.frames, untouched(name).frames), f"ALG does not change {name}'s output"
    return reference


def hooks_on(module: torch.nn.Module) -> dict[str, Any]:
    """The diffusers hooks on `module` itself, by name, in the order they were registered (outermost last)."""
    registry = getattr(module, "_diffusers_hook", None)
    return {} if registry is None else dict(registry.hooks)


def alg_hooked(pipe: Any, family: Family) -> list[str]:
    """The denoisers of `pipe` that carry an ALG hook."""
    return [name for name in family.denoisers if HOOK_NAME in hooks_on(getattr(pipe, name))]


def assert_no_alg_left(pipe: Any, family: Family) -> None:
    """Nothing of ALG remains on `pipe`: no hook, no wrapped method, no record of being enabled.

    A denoiser that carries no other hook (diffusers', or accelerate's offload) keeps no instance-level `forward`.
    """
    assert alg_hooked(pipe, family) == []
    for module in denoisers(pipe, family):
        if not hooks_on(module) and not hasattr(module, "_hf_hook"):
            assert "forward" not in vars(module), "an instance-level forward is left on the denoiser"
    wrapped = [name for name, value in vars(pipe).items() if inspect.isfunction(value)]
    assert wrapped == [], f"methods still wrapped on the instance: {wrapped}"
    on_class = [
        name
        for cls in type(pipe).__mro__
        for name, value in vars(cls).items()
        if getattr(getattr(value, "__code__", None), "co_filename", "").endswith("diffusers/scope.py")
    ]
    assert on_class == [], f"methods still wrapped on the pipeline class: {on_class}"
    with pytest.raises(ALGError, match="not enabled"):
        alg.disable(pipe)


def denoisers(pipe: Any, family: Family) -> list[torch.nn.Module]:
    """The family's denoiser modules of `pipe`."""
    return [getattr(pipe, name) for name in family.denoisers]


@functools.cache
def diffusers_refusal(name: str, feature: str) -> str | None:
    """Why diffusers itself cannot run `feature` on family `name` without ALG, or `None` if it can.

    `feature` names an entry of `FEATURES`. The probe applies the feature to a fresh pipeline and runs it once.
    """
    family = all_families()[name]
    pipe = family.make()
    try:
        for denoiser in denoisers(pipe, family):
            FEATURES[feature](denoiser)
        family.run(pipe)
    except Exception as error:  # whatever diffusers raises for the pipeline, reported as the skip reason
        return f"diffusers cannot run {feature} on {type(pipe).__name__} even without ALG: {error!r}"
    return None


def skip_unless_diffusers_runs(name: str, feature: str) -> None:
    """Skip the test when diffusers cannot run `feature` on family `name` without ALG either."""
    reason = diffusers_refusal(name, feature)
    if reason is not None:
        pytest.skip(reason)


def first_block_cache(threshold: float) -> Callable[[torch.nn.Module], None]:
    """Enable FirstBlockCache with `threshold` on a denoiser."""
    from diffusers.hooks import FirstBlockCacheConfig

    return lambda denoiser: denoiser.enable_cache(FirstBlockCacheConfig(threshold=threshold))


def mag_cache(calibrate: bool) -> Callable[[torch.nn.Module], None]:
    """Enable MagCache on a denoiser: calibration (never skips), or flat ratios that let it skip after step 0."""
    from diffusers.hooks import MagCacheConfig

    if calibrate:
        config = MagCacheConfig(calibrate=True, num_inference_steps=4)
    else:
        config = MagCacheConfig(mag_ratios=[1.0] * 4, num_inference_steps=4, threshold=1.0, retention_ratio=0.0)
    return lambda denoiser: denoiser.enable_cache(config)


def group_offload(denoiser: torch.nn.Module) -> None:
    """Block-level group offloading, one block per group, between the CPU and itself."""
    denoiser.enable_group_offload(
        onload_device="cpu", offload_device="cpu", offload_type="block_level", num_blocks_per_group=1
    )


FEATURES: dict[str, Callable[[torch.nn.Module], None]] = {
    "FirstBlockCache that never skips": first_block_cache(-1.0),
    "FirstBlockCache that skips": first_block_cache(1e3),
    "MagCache calibration": mag_cache(calibrate=True),
    "MagCache that skips": mag_cache(calibrate=False),
    "group offloading": group_offload,
}
"""Features applied to each denoiser, by name (see `diffusers_refusal`)."""


@functools.cache
def lora_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A random rank-4 LoRA on the attention projections of family `name`'s transformer, for `load_lora_weights`.

    Built in code: peft injects LoRA layers into a copy of the transformer, their `B` matrices (zero at
    initialization) are drawn at random, and peft extracts the state dict, whose keys get the pipeline's
    `transformer.` prefix (the diffusers format).
    """
    family = all_families()[name]
    pipe = family.make()
    transformer = copy.deepcopy(getattr(pipe, pipe.transformer_name))
    targets = sorted(
        {module_name.rsplit(".", 1)[-1] for module_name, _ in transformer.named_modules()} & set(LORA_TARGETS)
    )
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets), transformer)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter_name, parameter in transformer.named_parameters():
            if "lora_B" in parameter_name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    state = get_peft_model_state_dict(transformer)
    return {f"{pipe.transformer_name}.{key}": value for key, value in state.items()}


@functools.cache
def guided_with_fused_lora(name: str) -> Reference:
    """ALG on a fresh pipeline whose transformer has `lora_state_dict(name)` merged into its weights (no peft)."""
    family = all_families()[name]
    pipe = family.make()
    pipe.load_lora_weights(dict(lora_state_dict(name)))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    with alg.enable(pipe, CONFIG):
        return record_run(family, pipe)


@dataclass
class BlockCounts:
    """How often a block was called, and how often its own layers ran (a cache that skips it calls neither).

    Attributes:
        calls: Calls of the block.
        computed: Calls of the block's first parameterized layer.
    """

    calls: int = 0
    computed: int = 0


@contextlib.contextmanager
def block_counts(block: torch.nn.Module) -> Iterator[BlockCounts]:
    """Count the calls of `block` and the calls in which its layers ran."""
    layer = next(m for m in block.modules() if not list(m.children()) and any(True for _ in m.parameters()))
    counts = BlockCounts()
    handles = [
        block.register_forward_pre_hook(lambda *_: setattr(counts, "calls", counts.calls + 1)),
        layer.register_forward_pre_hook(lambda *_: setattr(counts, "computed", counts.computed + 1)),
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def contexts_seen(module: torch.nn.Module, state_of: Callable[[], Any], seen: list[tuple[str | None, int]]):
    """Append `(cache context name, batch)` of every call of `module` to `seen`.

    Args:
        module: The module to watch; its `hidden_states` (or first) input gives the batch.
        state_of: Gives the `StateManager` whose context to read (a stateful hook's).
        seen: Where to append.
    """

    def pre_hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            name = state_of().context.name
        except ValueError:  # no cache context set
            name = None
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        seen.append((name, hidden.shape[0]))

    handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def modules_with(module: torch.nn.Module, hook_class: type) -> list[tuple[torch.nn.Module, Any]]:
    """The submodules of `module` (itself included) carrying a diffusers hook of `hook_class`, with that hook."""
    return [
        (submodule, hook)
        for submodule in module.modules()
        for hook in hooks_on(submodule).values()
        if isinstance(hook, hook_class)
    ]


class CountingBackend:
    """A `torch.compile` backend that runs the captured graphs eagerly, counting compilations and graph runs.

    One shared instance keeps dynamo's compiled code reusable from test to test.

    Attributes:
        compiled: How many graphs were compiled.
        runs: How many times a compiled graph ran.
    """

    def __init__(self) -> None:
        self.compiled = 0
        self.runs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        self.compiled += 1

        def run(*args: Any) -> Any:
            self.runs += 1
            return graph.forward(*args)

        return run


COMPILE_BACKEND = CountingBackend()
