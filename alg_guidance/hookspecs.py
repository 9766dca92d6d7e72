"""The plugin contract: one hook per kind of plugin.

A plugin is any module or object with functions marked by `alg_guidance.hookimpl`
and named after one of the hooks below. Third-party plugins are found through the entry-point group
`alg_guidance`; the builtin filters, schedules and adapters are registered through these same hooks.

Each hook receives a `register` callable. A plugin calls it once per class it provides; the registry keeps
the class under its name, rejects a second, different class under a taken name (naming both providers)
and reports a plugin that fails without letting it break the package.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

PROJECT_NAME = "alg_guidance"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""The decorator that marks a plugin's hook implementations: `@alg.hookimpl` on a function named after a hook."""


class Register(Protocol):
    """The callable handed to every `alg_register_*` hook."""

    def __call__(self, plugin_class: type, /) -> None:
        """Register one class under the name it declares."""


@hookspec
def alg_register_filters(register: Register) -> None:
    """Register low-pass filters.

    Args:
        register: Call `register(cls)` for each filter class. The class subclasses
            [`alg_guidance.Filter`][alg_guidance.filters.Filter], declares its name as the default of a
            `kind: Literal[...]` field, and implements `filter_planes(planes, strength)` on float tensors of
            shape `[N, 1, H, W]`. The base class handles rank, dtype, strength validation and the identity at
            strength 0. Once registered, the filter is usable by name in any config:
            `ALGConfig(filter={"kind": "median", "radius": 2})`.

    Examples:
        ```python
        from typing import Literal

        import alg_guidance as alg


        class Median(alg.Filter):
            kind: Literal["median"] = "median"
            radius: int = 2

            def filter_planes(self, planes, strength):
                ...


        @alg.hookimpl
        def alg_register_filters(register):
            register(Median)
        ```
    """


@hookspec
def alg_register_schedules(register: Register) -> None:
    """Register strength schedules.

    Args:
        register: Call `register(cls)` for each schedule class. The class subclasses
            [`alg_guidance.Schedule`][alg_guidance.schedules.Schedule], declares its name as the default of a
            `kind: Literal[...]` field, and maps a [`StepState`][alg_guidance.schedules.StepState] to a strength in
            `[0, 1]` by implementing `__call__(state)`. A schedule that reads `state.noise_level` sets the
            class variable `uses_noise_level = True`.

    Examples:
        ```python
        import math
        from typing import Literal

        import alg_guidance as alg


        class HalfCosine(alg.Schedule):
            kind: Literal["half_cosine"] = "half_cosine"

            def __call__(self, state):
                return 0.5 * (1 + math.cos(math.pi * state.progress))


        @alg.hookimpl
        def alg_register_schedules(register):
            register(HalfCosine)
        ```
    """


@hookspec
def alg_register_adapters(register: Register) -> None:
    """Register model adapters: the knowledge of where a model family keeps its image condition.

    Args:
        register: Call `register(cls)` for each adapter class. The class subclasses
            [`alg_guidance.adapters.Adapter`][alg_guidance.adapters.base.Adapter], declares its name in the class
            variable `name`, the pipelines it serves in `pipelines`, how the pipeline runs CFG (`guidance`,
            `contexts`, `batched_inputs`) and where the image condition sits (`layout()`, usually one of the
            [layouts][alg_guidance.adapters.layouts]). `alg_guidance.enable` asks each registered adapter whether
            it `matches` a pipeline, so an adapter for a new model family works with no change to alg-guidance.

    Examples:
        ```python
        import alg_guidance as alg
        from alg_guidance.adapters import Adapter, ChannelSlice


        class MyVideoAdapter(Adapter):
            name = "my-video"
            pipelines = ("MyVideoImageToVideoPipeline",)
            guidance = "batched"  # one denoiser call on [uncond, cond]
            contexts = None
            batched_inputs = ("hidden_states", "timestep", "encoder_hidden_states")

            def layout(self):
                # the image latent follows the 16 noisy-latent channels of hidden_states [B, C, F, H, W]
                return ChannelSlice("hidden_states", dim=1, start=16)


        @alg.hookimpl
        def alg_register_adapters(register):
            register(MyVideoAdapter)
        ```
    """
