"""Every batch-affecting argument of the stock pipelines works under ALG, with both `batch_branches` settings.

`num_videos_per_prompt=2` makes pipelines repeat some inputs to the batch and leave others at batch 1 for the
model to broadcast (Wan's image embeddings, batch-1 prompt embeddings); two prompts give per-sample embeddings.
ALG must run both, give the same frames whether its extra branch runs in the batch or alone, change the frames
(it is active), and pass through bit-identically at zero strength.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

import alg_guidance as alg
from tests.support.compat import CONFIG
from tests.support.families import all_families
from tests.support.recording import assert_prediction

FAMILIES = all_families()
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


def two_prompts(call: dict[str, Any]) -> dict[str, Any]:
    """The call with two different prompts: every prompt embedding doubled to batch 2 (masks repeated)."""
    doubled = {}
    for name, value in call.items():
        if "prompt" in name and isinstance(value, torch.Tensor):
            second = value if "mask" in name else -value
            doubled[name] = torch.cat([value, second])
    return {**call, **doubled}


def two_images(call: dict[str, Any]) -> dict[str, Any]:
    """The call with two prompts and an image for each (the second one mirrored)."""
    image = call["image"]
    return {**two_prompts(call), "image": [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]}


BATCHES = {
    "num_videos_per_prompt=2": lambda call: {**call, "num_videos_per_prompt": 2},
    "two prompts": two_prompts,
    "two prompts and images": two_images,
    "two prompts and images, num_videos_per_prompt=2": lambda call: {**two_images(call), "num_videos_per_prompt": 2},
}


def run(family, pipe, call) -> torch.Tensor:
    return pipe(**call).frames


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", FAMILIES)
def test_batch_arguments_run_with_the_same_frames_under_both_batch_settings(name, batch):
    family = FAMILIES[name]
    call = family.call()
    make_call = BATCHES[batch]
    stock = family.make()
    single = run(family, stock, call)
    try:
        plain = run(family, stock, make_call(family.call()))
    except Exception as error:
        pytest.skip(f"the stock {type(stock).__name__} cannot run {batch} either: {type(error).__name__}: {error}")
    if plain.shape[0] == single.shape[0]:
        pytest.skip(f"the stock {type(stock).__name__} makes one video of {batch}")
    frames = {}
    for batch_branches in (True, False):
        pipe = family.make()
        with alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})):
            frames[batch_branches] = run(family, pipe, make_call(family.call()))
        with alg.enable(pipe, OFF.merge({"batch_branches": batch_branches})):
            assert torch.equal(run(family, pipe, make_call(family.call())), plain)
    assert frames[True].shape == plain.shape
    assert_prediction(frames[False], frames[True])
    for sample in range(plain.shape[0]):
        assert not torch.equal(frames[True][sample], plain[sample]), f"ALG left sample {sample} unchanged"
