"""The diffusers hook that makes a stock pipeline's denoiser calls follow the ALG rule.

One [`GuidedRun`][alg_guidance.integrations.diffusers.hook.GuidedRun] per enabled pipeline holds the method's
state (strength, low-passed conditions, the step's pending branches); one
[`ALGHook`][alg_guidance.integrations.diffusers.hook.ALGHook] per denoiser (two for Wan 2.2's experts) hands
it the calls.

Batched pipelines (one call on `[uncond, cond]`) get `[u_orig, c_lp + u_orig - u_lp]` back. Sequential ones
get `c_lp` from the cond call; the uncond call computes `u_orig` and `u_lp`, adds `u_orig - u_lp` into the
cond prediction the pipeline is holding, and returns `u_orig`. Either way the pipeline's own
`u + w * (c - u)` equals `u_orig + w * (c_lp - u_lp)` for whatever `w` it uses (dynamic CFG, per-frame
scales, Wan 2.2's second scale, HunyuanVideo's unstored true-CFG scale), without alg-guidance knowing `w`.

Caching hooks (FirstBlockCache, MagCache, and any other stateful diffusers hook on the denoiser or its blocks)
keep state per cache context and need a constant batch in each: the extra branch then runs as its own call,
under the context `<name>_alg`. FasterCache and PyramidAttentionBroadcast are refused (see `REFUSED_CACHES`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch
from diffusers.hooks.faster_cache import FasterCacheBlockHook, FasterCacheDenoiserHook
from diffusers.hooks.hooks import BaseState, CacheContext, ModelHook, StateManager
from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

from ...adapters.base import Adapter
from ...config import ALGConfig
from ...errors import ALGError
from ...guidance import LowPass, batched_outputs, resolve_mode
from .branches import merge_batches, named_inputs, output_tensor, split_batch, with_output_tensor
from .clock import SchedulerClock
from .offload import return_to_denoiser

HOOK_NAME = "alg_guidance"
_FASTER_CACHE = ("FasterCache", "it approximates the unconditional branch from two-branch CFG batches")
REFUSED_CACHES: dict[type[ModelHook], tuple[str, str]] = {
    FasterCacheDenoiserHook: _FASTER_CACHE,
    FasterCacheBlockHook: _FASTER_CACHE,
    PyramidAttentionBroadcastHook: (
        "PyramidAttentionBroadcast",
        "it reuses attention outputs from call to call, counting on two branches per step",
    ),
}
"""The diffusers hooks ALG cannot run with: hook class -> (technique, why)."""


def _other_hooks(denoiser: torch.nn.Module) -> Iterator[ModelHook]:
    """The diffusers hooks on `denoiser` and its submodules, other than ALG's own.

    Read from the modules themselves, so that hooks applied with `diffusers.hooks.apply_*` count as well as those
    applied with `enable_cache`.
    """
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            yield from (hook for name, hook in registry.hooks.items() if name != HOOK_NAME)


def refuse_incompatible_caches(denoisers: list[torch.nn.Module]) -> None:
    """Raise if a denoiser runs a caching technique that ALG cannot run with.

    Raises:
        ALGError: A denoiser carries a FasterCache or PyramidAttentionBroadcast hook.
    """
    for denoiser in denoisers:
        for hook in _other_hooks(denoiser):
            if type(hook) in REFUSED_CACHES:
                technique, reason = REFUSED_CACHES[type(hook)]
                raise ALGError(
                    f"ALG cannot run with {technique} on {type(denoiser).__name__}: {reason}, but ALG adds a third "
                    "branch. Remove it (disable_cache() on the denoiser, if enable_cache applied it), or use "
                    "FirstBlockCache or MagCache, which run ALG's extra branch under their own cache context"
                )


def has_caching_hooks(denoisers: list[torch.nn.Module]) -> bool:
    """Whether a denoiser carries a stateful diffusers hook (a cache), whose state is kept per cache context."""
    return any(hook._is_stateful for denoiser in denoisers for hook in _other_hooks(denoiser))


class _NoState(BaseState):
    def reset(self, *args, **kwargs) -> None:
        pass


class ALGHook(ModelHook):
    """A diffusers `ModelHook` on one denoiser that routes its calls through a `GuidedRun`.

    It is stateful only so that diffusers hands it the `cache_context` name of each call (which tells the
    cond and uncond calls of sequential pipelines apart) and resets it when a pipeline call ends.
    """

    _is_stateful = True

    def __init__(self, run: GuidedRun) -> None:
        super().__init__()
        self.run = run
        self.cache_context = StateManager(_NoState)
        self.signature: inspect.Signature | None = None

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        """Remember the denoiser's signature, to read its inputs by name."""
        self.signature = inspect.signature(module.forward)
        return module

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Run the denoiser call under the ALG rule."""
        return self.run(self, module, args, kwargs)

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        """A pipeline call ended: forget its conditions."""
        self.run.finish()
        return module

    def original(self, *args: Any, **kwargs: Any) -> Any:
        """The denoiser's forward as it was before this hook."""
        return self.fn_ref.original_forward(*args, **kwargs)

    def context(self) -> CacheContext | None:
        """The cache context the pipeline set for this call, if any."""
        try:
            return self.cache_context.context
        except ValueError:
            return None


class _Call:
    """One intercepted denoiser call: its inputs, and how to run more calls beside it."""

    def __init__(self, hook: ALGHook, module: torch.nn.Module, args: tuple, kwargs: dict, separate: bool) -> None:
        self.hook = hook
        self.module = module
        self.inputs = named_inputs(hook.signature, args, kwargs)
        self.context = hook.context()
        self.separate = separate

    def main(self, inputs: dict[str, Any]) -> Any:
        """Run `inputs` as the pipeline's own call, under its cache context."""
        return self.hook.original(**inputs)

    def extra(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Run an extra branch; under its own cache context when the pipeline uses one (caching hooks)."""
        if self.context is None:
            return output_tensor(self.hook.original(**inputs))
        fields = {**asdict(self.context), "name": f"{self.context.name}_alg"}
        with self.module.cache_context(**fields):
            return output_tensor(self.hook.original(**inputs))


class GuidedRun:
    """The ALG state of one pipeline: its adapter, config, low-passed conditions and the step in progress.

    Args:
        adapter: The pipeline's adapter.
        config: The ALG configuration.
    """

    def __init__(self, adapter: Adapter, config: ALGConfig) -> None:
        self.adapter = adapter
        self.config = config
        self.low_pass = LowPass(config)
        self.clock = SchedulerClock(adapter.pipeline, config.schedule.uses_noise_level)

    def _start_run(self) -> None:
        refuse_incompatible_caches(self.adapter.denoisers())
        self.separate = not self.config.batch_branches or has_caching_hooks(self.adapter.denoisers())
        self.low_pass.reset()
        self.layout = self.adapter.layout()
        self.uses_cfg = self.adapter.uses_cfg()
        self.mode = resolve_mode(self.config.mode, True if self.uses_cfg is None else self.uses_cfg)
        self._pending: tuple[int, str, tuple[torch.Tensor, ...]] | None = None
        self._last_index: int | None = None

    def finish(self) -> None:
        """The pipeline call ended; the next denoiser call starts a new run."""
        self.clock.forget()
        self.low_pass.reset()
        self._pending = None

    @torch.compiler.disable(recursive=False)
    def __call__(self, hook: ALGHook, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        """Handle one denoiser call: pass it through at strength 0, else apply the branch rule.

        Dynamo skips this frame's own control flow (which depends on the step and the branch, and would make a
        compiled denoiser recompile at every step) but still compiles the denoiser calls made from it.
        """
        if self.clock.new_run():
            self._start_run()
        branch = self._branch(hook)
        state = self.clock.state(starts_step=branch != "uncond")
        strength = self.low_pass.strength(state)
        if strength == 0.0:
            return hook.original(*args, **kwargs)
        call = _Call(hook, module, args, kwargs, self.separate)
        low_passed = self.layout.put(call.inputs, self._low_passed(call.inputs, module, strength))
        if self.mode == "replace" or (branch == "batched" and not self.uses_cfg):
            return call.main(low_passed)
        if branch == "batched":
            return self._batched(call, low_passed)
        if branch == "cond":
            output = call.main(low_passed)
            self._settle(state.step, "cond", (output_tensor(output),))
            return output
        return self._uncond(call, low_passed, state.step)

    def _branch(self, hook: ALGHook) -> str:
        if self.adapter.guidance == "batched":
            return "batched"
        context = hook.context()
        names = self.adapter.contexts
        if names and context is not None and context.name in names:
            return "cond" if context.name == names[0] else "uncond"
        index = self.clock.step_index()
        if index is None:
            raise ALGError(
                f"cannot tell the cond and uncond calls of {type(self.adapter.pipeline).__name__} apart: "
                "it sets no cache context and its scheduler keeps no step index"
            )
        branch = "uncond" if index == self._last_index else "cond"
        self._last_index = index
        return branch

    def _low_passed(self, inputs: dict[str, Any], module: torch.nn.Module, strength: float) -> torch.Tensor:
        condition = self.layout.get(inputs)
        if self.config.space == "latent":
            return self.low_pass(condition, strength)
        latent = self.low_pass.encoded(strength, lambda low_pass: self._encode(module, low_pass))
        return latent.repeat(condition.shape[0] // latent.shape[0], *[1] * (latent.ndim - 1))

    def _encode(self, denoiser: torch.nn.Module, low_pass: Any) -> torch.Tensor:
        latent = self.adapter.encode_pixels(low_pass)
        return_to_denoiser(self.adapter.pipeline, denoiser)  # the VAE ran mid-call: undo what its offload hook did
        return latent

    def _batched(self, call: _Call, low_passed: dict[str, Any]) -> Any:
        names = self.adapter.batched_inputs
        uncond, _ = split_batch(call.inputs, names, 2)
        uncond_lp, cond_lp = split_batch(low_passed, names, 2)
        if not self.adapter.uncond_sees_image:  # no image in the uncond branch: u_lp is u_orig
            return call.main(merge_batches([uncond, cond_lp], names))
        if call.separate:
            output = call.main(merge_batches([uncond, cond_lp], names))
            u_orig, c_lp = output_tensor(output).chunk(2)
            u_lp = call.extra(uncond_lp)
        else:
            output = call.main(merge_batches([uncond, uncond_lp, cond_lp], names))
            u_orig, u_lp, c_lp = output_tensor(output).chunk(3)
        return with_output_tensor(output, torch.cat(batched_outputs(u_orig, c_lp, u_lp)))

    def _uncond(self, call: _Call, low_passed: dict[str, Any], step: int) -> Any:
        names = self.adapter.batched_inputs
        if call.separate:
            output = call.main(call.inputs)
            u_orig, u_lp = output_tensor(output), call.extra(low_passed)
        else:
            output = call.main(merge_batches([call.inputs, low_passed], names))
            u_orig, u_lp = output_tensor(output).chunk(2)
            output = with_output_tensor(output, u_orig)
        self._settle(step, "uncond", (u_orig, u_lp))
        return output

    def _settle(self, step: int, branch: str, predictions: tuple[torch.Tensor, ...]) -> None:
        """Pair a step's cond prediction `(c_lp,)` with its uncond branches `(u_orig, u_lp)`, in either order.

        The cond prediction the pipeline holds becomes, in place, the cond output of the batched rule
        ([`batched_outputs`][alg_guidance.guidance.batched_outputs]), whose uncond output `u_orig` the uncond call
        returns: the pipeline's own `u + w * (c - u)` is then ALG for its `w`.
        """
        pending = self._pending
        if pending is None or pending[0] != step or pending[1] == branch:
            self._pending = (step, branch, predictions)
            return
        (c_lp,), (u_orig, u_lp) = (predictions, pending[2]) if branch == "cond" else (pending[2], predictions)
        c_lp.copy_(batched_outputs(u_orig, c_lp, u_lp)[1])
        self._pending = None
