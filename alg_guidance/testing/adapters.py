"""The contract of model adapters: the checks every builtin adapter passes on its tiny pipelines, for plugin authors.

Each check takes the adapter's registry name, a function that builds a fresh (small, seeded) pipeline, and a
function that returns the keyword arguments of a short, reproducible call (a fresh seeded generator each time,
and `output_type="latent"` so that the output is a tensor). They need diffusers.

```python
import pytest
from alg_guidance.testing import ADAPTER_CHECKS

@pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=lambda check: check.__name__)
def test_my_video_adapter(check):
    check("my-video", make_tiny_pipeline, tiny_call_kwargs)
```

Each check raises `AssertionError` naming the broken promise, and skips (`unittest.SkipTest`, which pytest
honours) what the stock pipeline itself cannot run.
"""

from __future__ import annotations

import inspect
import unittest
from collections.abc import Callable
from typing import Any

import torch

from ..config import ALGConfig
from ..engine import named_inputs
from ..registry import Registry, default_registry

MakePipeline = Callable[[], Any]
"""Builds a fresh pipeline; two calls give pipelines with equal weights."""
CallArguments = Callable[[], dict[str, Any]]
"""The keyword arguments of a short, reproducible pipeline call."""

FILTERING = ALGConfig(filter={"kind": "downsample", "factor": 0.4}, schedule={"kind": "constant", "value": 1.0})
"""A config that filters at every step, so that ALG changes every step's prediction."""
ZERO_STRENGTH = ALGConfig(filter={"kind": "downsample", "factor": 0.4}, schedule={"kind": "constant", "value": 0.0})
"""A config whose strength is zero at every step: ALG must then change nothing."""


def _sample(pipeline: Any, arguments: dict[str, Any]) -> torch.Tensor:
    output = pipeline(**arguments, return_dict=False)[0]
    assert isinstance(output, torch.Tensor), f"the call must return a tensor (output_type='latent'), got {output!r}"
    return output


def check_serves(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """The adapter serves the pipeline (by name, and detected among all adapters) and finds its denoisers."""
    from ..integrations.diffusers import find_adapter

    pipeline = make_pipeline()
    instance = (registry or default_registry()).adapter(adapter)()
    assert instance.refusal(pipeline) is None, f"{adapter}: refuses its pipeline: {instance.refusal(pipeline)}"
    assert instance.denoisers(pipeline), f"{adapter}: finds no denoiser module on its pipeline"
    detected = find_adapter(pipeline, registry=registry).name
    assert detected == adapter, f"{adapter}: another adapter, {detected!r}, is detected first"


def check_zero_strength_is_bit_identical(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """With the strength at zero at every step, the pipeline samples bit-identically to the untouched one."""
    from ..integrations.diffusers import enable

    untouched = _sample(make_pipeline(), call())
    pipeline = make_pipeline()
    with enable(pipeline, ZERO_STRENGTH, adapter=adapter, registry=registry):
        assert torch.equal(_sample(pipeline, call()), untouched), f"{adapter}: zero strength changed the output"


def check_disable_is_bit_identical(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """ALG changes the output; after `disable` the pipeline samples bit-identically to one never enabled."""
    from ..integrations.diffusers import enable

    untouched = _sample(make_pipeline(), call())
    pipeline = make_pipeline()
    with enable(pipeline, FILTERING, adapter=adapter, registry=registry):
        assert not torch.equal(_sample(pipeline, call()), untouched), f"{adapter}: ALG left the output unchanged"
    assert torch.equal(_sample(pipeline, call()), untouched), f"{adapter}: after disable the output differs"


def check_layout_round_trip(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """The layout reads and replaces the condition of a real denoiser call, and nothing else.

    It reads a condition with (C, H, W) planes; putting another in its place changes exactly one input, writes
    into none of the caller's tensors, and is read back unchanged (unless the layout reads a fixed reference, as
    LTX-Video's noised keyframes do); putting back the condition it read restores the input.
    """
    from ..integrations.diffusers import enable
    from ..integrations.diffusers.scope import active_run

    pipeline = make_pipeline()
    instance = (registry or default_registry()).adapter(adapter)()
    seen: list[tuple[dict[str, Any], Any]] = []

    def first_call(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not seen:
            run = active_run()
            signature = inspect.signature(module.forward)
            seen.append((named_inputs(signature, args, kwargs), instance.layout(pipeline, run.captures)))

    denoiser = instance.denoisers(pipeline)[0]
    handle = denoiser.register_forward_pre_hook(first_call, with_kwargs=True)
    try:
        with enable(pipeline, ZERO_STRENGTH, adapter=adapter, registry=registry):
            _sample(pipeline, call())
    finally:
        handle.remove()
    assert seen, f"{adapter}: the pipeline never called {type(denoiser).__name__}"
    inputs, layout = seen[0]
    before = {name: value.clone() for name, value in inputs.items() if isinstance(value, torch.Tensor)}
    condition = layout.get(inputs)
    assert condition.ndim >= 3, f"{adapter}: the condition has shape {tuple(condition.shape)}, no (C, H, W) planes"
    other = torch.randn(condition.shape, generator=torch.Generator().manual_seed(0)).to(condition.dtype)
    replaced = layout.put(inputs, other)
    read_back = layout.get(replaced)
    if not torch.equal(read_back, condition):  # a layout reading the inputs, not a fixed reference
        torch.testing.assert_close(read_back, other, msg=f"{adapter}: put then get changed the condition")
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[name]), f"{adapter}: put wrote into the caller's input {name!r}"
    changed = [name for name in inputs if replaced[name] is not inputs[name]]
    assert len(changed) == 1, f"{adapter}: put changed the inputs {changed}, expected one"
    assert not torch.equal(replaced[changed[0]], inputs[changed[0]]), f"{adapter}: put left the input as it was"
    restored = layout.put(inputs, condition)
    torch.testing.assert_close(
        restored[changed[0]], inputs[changed[0]], msg=f"{adapter}: putting back the condition read changes the input"
    )


def check_num_videos_per_prompt(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """`num_videos_per_prompt=2` samples under both `batch_branches` settings, with the same frames."""
    from ..integrations.diffusers import enable

    stock = make_pipeline()
    try:
        plain = _sample(stock, {**call(), "num_videos_per_prompt": 2})
    except Exception as error:
        raise unittest.SkipTest(f"the stock pipeline cannot run num_videos_per_prompt=2: {error}") from None
    frames = []
    for batch_branches in (True, False):
        pipeline = make_pipeline()
        with enable(pipeline, FILTERING.merge({"batch_branches": batch_branches}), adapter=adapter, registry=registry):
            frames.append(_sample(pipeline, {**call(), "num_videos_per_prompt": 2}))
    assert frames[0].shape == plain.shape, f"{adapter}: {tuple(frames[0].shape)} frames, not {tuple(plain.shape)}"
    scale = frames[0].abs().max().item()
    torch.testing.assert_close(
        frames[1],
        frames[0],
        rtol=1e-4,
        atol=1e-4 * scale,
        msg=f"{adapter}: batch_branches=False samples other frames than batch_branches=True",
    )


ADAPTER_CHECKS: tuple[Callable[..., None], ...] = (
    check_serves,
    check_zero_strength_is_bit_identical,
    check_disable_is_bit_identical,
    check_layout_round_trip,
    check_num_videos_per_prompt,
)
"""Every adapter check, in order; each takes the adapter's name, `make_pipeline` and `call`. `check_adapter` runs
them all."""


def check_adapter(
    adapter: str, make_pipeline: MakePipeline, call: CallArguments, registry: Registry | None = None
) -> None:
    """Run every adapter check; skips if one of them skipped."""
    from .plugins import _run_all

    _run_all(ADAPTER_CHECKS, adapter, make_pipeline, call, registry)
