"""A worker for the context-parallel tests: run as `python -m torch.distributed.run --nproc_per_node 2 -m ...`.

Each rank builds the tiny pipeline of a family (`tests.support.families`), samples it without parallelism (plain
CFG, then ALG), then with diffusers' context parallelism (Ulysses over the 2 ranks, gloo backend, CPU): plain
CFG, ALG enabled before `enable_parallelism`, and ALG enabled after it. It records, per rank, the latent videos,
the strength of every call's plan, the shapes of the conditions the filter saw, the sequence the output layer saw,
the tokens entering an LTX-Video model (`proj_in`, after any split), and the order of the hooks on the transformer;
and writes them to `<out>/rank<r>.pt`.

diffusers 0.42.1 builds its device mesh on `torch.accelerator`'s device type and picks the device as
`rank % torch.accelerator.device_count()`, which is 0 on a machine without an accelerator (a ZeroDivisionError):
`enable_parallelism` runs here with `device_count` reporting 1, which leaves a CPU mesh on the gloo group.
Ring attention needs the log-sum-exp of the attention, which the native (SDPA) backend does not return and the
backends that do are CUDA kernels: only Ulysses runs on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig, LTXVideoTransformer3DModel
from diffusers.models._modeling_parallel import ContextParallelInput

import alg_guidance as alg
from alg_guidance.adapters.lookup import find_adapter
from alg_guidance.engine.conditions import LowPassedConditions
from alg_guidance.schedules import Step

from .families import all_families


def cp_plan(transformer: torch.nn.Module) -> dict[str, Any]:
    """The model's context-parallel plan; LTX-Video's with its per-token `timestep` split like its tokens.

    diffusers 0.42.1's LTX plan splits `hidden_states` at the model's input but not the `[B, tokens]` timestep that
    the image-to-video pipelines pass, and the first block fails on the mismatch (on any device).
    """
    plan = dict(type(transformer)._cp_plan)
    if isinstance(transformer, LTXVideoTransformer3DModel):
        plan[""] = {**plan[""], "timestep": ContextParallelInput(split_dim=1, expected_dims=2, split_output=False)}
    return plan


def enable_parallelism(transformer: torch.nn.Module) -> None:
    """`transformer.enable_parallelism` with Ulysses attention over the whole (gloo, CPU) group."""
    config = ContextParallelConfig(ulysses_degree=dist.get_world_size())
    with mock.patch.object(torch.accelerator, "device_count", return_value=max(torch.accelerator.device_count(), 1)):
        transformer.enable_parallelism(config=config, cp_plan=cp_plan(transformer))


@contextlib.contextmanager
def observed(pipe: Any, seen: dict[str, list]) -> Any:
    """Record the strengths ALG decides, the conditions it filters, and the sequence length of each block."""
    strength, filter_ = LowPassedConditions.strength, LowPassedConditions._filter

    def spy_strength(self, state):
        value = strength(self, state)
        seen["strengths"].append((state.step, value))
        return value

    def spy_filter(self, x, value, key):
        seen["filtered"].append((tuple(x.shape), value))
        return filter_(self, x, value, key)

    handle = pipe.transformer.proj_out.register_forward_pre_hook(  # inside the sharding, before the gather
        lambda module, args: seen["block_tokens"].append(tuple(args[0].shape))
    )
    proj_in = getattr(pipe.transformer, "proj_in", None)  # LTX-Video: where its tokens enter, after any split
    if proj_in is not None:
        proj_in.register_forward_pre_hook(lambda module, args: seen["tokens_in"].append(args[0].detach().clone()))
    with (
        mock.patch.object(LowPassedConditions, "strength", spy_strength),
        mock.patch.object(LowPassedConditions, "_filter", spy_filter),
    ):
        try:
            yield
        finally:
            handle.remove()
            if proj_in is not None:
                proj_in._forward_pre_hooks.clear()


def sample(family: Any, pipe: Any, config: Any | None) -> tuple[torch.Tensor | str, dict[str, list]]:
    """The latent video (or the text of the error the run raised) and what `observed` saw."""
    seen: dict[str, list] = {"strengths": [], "filtered": [], "block_tokens": [], "tokens_in": []}
    handle = alg.enable(pipe, config) if config is not None and not alg_is_on(pipe) else None
    try:
        with observed(pipe, seen):
            video = family.run(pipe)
    except RuntimeError as error:  # diffusers' own context parallelism failing (LTX-Video with its attention mask)
        video = f"{type(error).__name__}: {error}"
    finally:
        if handle is not None:
            handle.disable()
    return video, seen


def alg_is_on(pipe: Any) -> bool:
    registry = getattr(pipe.transformer, "_diffusers_hook", None)
    return registry is not None and "alg_guidance" in registry.hooks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="wan2.1")
    parser.add_argument("--config", default=None, help="an ALG preset name (the adapter's preset by default)")
    parser.add_argument("out", type=Path)
    arguments = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    family = all_families()[arguments.family]
    preset = arguments.config or find_adapter(family.make()).preset
    # active at steps 0 and 1 of 4: one step of three branches, one step of cached condition
    config = alg.resolve_config(preset).model_copy(update={"schedule": Step(start=0.0, end=0.5)})
    result: dict[str, Any] = {"rank": dist.get_rank()}
    result["single_cfg"], result["single_cfg_seen"] = sample(family, family.make(), None)
    result["single_alg"], result["single_alg_seen"] = sample(family, family.make(), config)

    pipe = family.make()
    enable_parallelism(pipe.transformer)
    result["cp_cfg"], result["cp_cfg_seen"] = sample(family, pipe, None)
    with alg.enable(pipe, config):  # ALG after enable_parallelism
        result["hooks_after"] = list(pipe.transformer._diffusers_hook._hook_order)
        result["cp_alg_after"], result["cp_alg_after_seen"] = sample(family, pipe, config)

    pipe = family.make()
    with alg.enable(pipe, config):  # ALG before enable_parallelism
        enable_parallelism(pipe.transformer)
        result["cp_alg_before"], result["cp_alg_before_seen"] = sample(family, pipe, config)
        result["hooks_before"] = list(pipe.transformer._diffusers_hook._hook_order)
    result["hooks_disabled"] = list(pipe.transformer._diffusers_hook._hook_order)
    result["cp_cfg_disabled"], _ = sample(family, pipe, None)

    arguments.out.mkdir(parents=True, exist_ok=True)
    torch.save(result, arguments.out / f"rank{dist.get_rank()}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
