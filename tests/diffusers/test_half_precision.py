"""Every family samples with ALG in bfloat16, feeding its denoisers the dtypes it feeds them without ALG.

ALG hands a filtered step's cond prediction back in float32 where the pipeline casts its latents to the model's
dtype (so its own CFG runs in float32); a pipeline that steps its latents in the prediction's dtype and feeds them
to the model uncast must get the model's dtype back, or its next step hands a bf16 model float32 inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from diffusers.guiders import ClassifierFreeGuidance

import alg_guidance as alg
from tests.support import tiny_hunyuan
from tests.support.compat import CONFIG
from tests.support.families import Family, all_families
from tests.support.tiny_hunyuan import GUIDER_CFG

FAMILIES = all_families()


@contextmanager
def input_dtypes(pipe: Any, family: Family) -> Iterator[list[tuple[torch.dtype, ...]]]:
    """The dtypes of the floating-point tensors each denoiser call gets, in call order."""
    seen: list[tuple[torch.dtype, ...]] = []

    def observe(module, args, kwargs):
        tensors = [*args, *kwargs.values()]
        seen.append(tuple(t.dtype for t in tensors if torch.is_tensor(t) and t.is_floating_point()))

    modules = [getattr(pipe, name) for name in family.denoisers if getattr(pipe, name, None) is not None]
    handles = [module.register_forward_pre_hook(observe, with_kwargs=True) for module in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def bf16_run(
    family: Family, config: alg.ALGConfig | None, pipe: Any = None
) -> tuple[torch.Tensor, set[tuple[torch.dtype, ...]]]:
    """A bfloat16 run of `pipe` or a fresh pipeline (with ALG when `config` is given): its output and its denoiser
    inputs."""
    pipe = (family.make() if pipe is None else pipe).to(dtype=torch.bfloat16)
    call = {
        key: value.to(torch.bfloat16) if torch.is_tensor(value) and value.is_floating_point() else value
        for key, value in family.call().items()
    }
    with input_dtypes(pipe, family) as seen:
        if config is None:
            output = pipe(**call).frames
        else:
            with alg.enable(pipe, config):
                output = pipe(**call).frames
    return output, set(seen)


@pytest.mark.parametrize("name", FAMILIES)
def test_alg_in_bfloat16_keeps_the_pipelines_dtypes(name):
    family = FAMILIES[name]
    try:
        plain, plain_inputs = bf16_run(family, None)
    except RuntimeError as error:  # the stock pipeline itself
        pytest.skip(f"the pipeline does not run in bfloat16 on the CPU without ALG: {error}")
    guided, guided_inputs = bf16_run(family, CONFIG)  # the first 3 of 4 steps filtered
    assert guided_inputs == plain_inputs
    assert guided.dtype == plain.dtype and torch.isfinite(guided.float()).all()


def test_the_alg_guider_in_bfloat16_keeps_the_pipelines_dtypes():
    family = FAMILIES["hunyuanvideo1.5"]
    plain, plain_inputs = bf16_run(family, None)
    guider = alg.ALGGuidance(ClassifierFreeGuidance(guidance_scale=GUIDER_CFG), CONFIG)
    guided, guided_inputs = bf16_run(family, None, tiny_hunyuan.hunyuan15_i2v(guider))
    assert guided_inputs == plain_inputs
    assert guided.dtype == plain.dtype and not torch.equal(guided, plain)
