"""The low-passed conditions of one sampling run: the schedule's strengths, and the filter applied and checked.

Cache policy: the image condition of a run does not change between steps, so a filtered condition is computed
once per strength and kept while that strength lasts; when a call asks for another strength, the conditions of
the previous one are dropped. A step schedule (the published settings) filters once per run; a continuous
schedule filters once per step and never holds more than one step's conditions. A pixel-space condition
(filtered image, encoded again) follows the same policy.

The filter is a plugin: the first time a run filters a condition, its output is checked (shape, dtype, device,
finite values, a new tensor that leaves its input untouched), and a faulty filter is named with the package that
provides it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch

from ..config import ALGConfig
from ..errors import ALGError
from ..registry import Registry, default_registry
from ..schedules import StepState


class LowPassedConditions:
    """One run's strengths and low-passed conditions.

    Args:
        config: The ALG configuration.
        registry: The registry the filter came from, to name its provider in errors.

    Examples:
        >>> conditions = LowPassedConditions(ALGConfig())
        >>> strength = conditions.strength(StepState.from_step(0, 50))
        >>> condition = torch.randn(1, 20, 3, 8, 8)
        >>> conditions(condition, strength) is conditions(condition, strength)
        True
        >>> conditions(condition, 0.0) is condition
        True
    """

    def __init__(self, config: ALGConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry
        self._strength: float | None = None
        self._conditions: dict[Hashable, torch.Tensor] = {}
        self._checked: set[Hashable] = set()

    def strength(self, state: StepState) -> float:
        """The schedule's strength at `state`, checked to be a float in `[0, 1]`."""
        value = self.config.schedule(state)
        if isinstance(value, torch.Tensor) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ALGError(
                f"schedule {self.config.schedule.kind!r} returned {value!r} at {state}; "
                "a schedule must return a Python float in [0, 1]"
            )
        return float(value)

    def __call__(self, condition: torch.Tensor, strength: float, *, key: Hashable = "image") -> torch.Tensor:
        """The latent condition low-passed at `strength`: `condition` itself at 0, else computed once per strength.

        Args:
            condition: The latent condition, height and width last.
            strength: The filter strength in `[0, 1]`.
            key: Tells apart conditions filtered in the same run (say, first and last frame).
        """
        if strength == 0.0:
            return condition
        cache_key = (key, condition.shape, condition.dtype, condition.device)
        return self._cached(strength, cache_key, lambda: self._filter(condition, strength, key))

    def encoded(self, strength: float, encode: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]):
        """A pixel-space condition at `strength`, encoded once per strength.

        Args:
            strength: The filter strength in `(0, 1]`.
            encode: Builds the latent condition from the run's images, given the filter at `strength` to
                apply to each of them before encoding.
        """
        return self._cached(
            strength, "pixels", lambda: encode(lambda image: self._filter(image, strength, ("pixels", image.shape)))
        )

    def _cached(self, strength: float, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if strength != self._strength:
            self._conditions.clear()
            self._strength = strength
        if key not in self._conditions:
            self._conditions[key] = compute()
        return self._conditions[key]

    def _filter(self, x: torch.Tensor, strength: float, key: Hashable) -> torch.Tensor:
        if key in self._checked:
            return self.config.filter(x, strength)
        before = x.clone()
        output = self.config.filter(x, strength)
        self._check_output(x, before, output, strength)
        self._checked.add(key)
        return output

    def _check_output(self, x: torch.Tensor, before: torch.Tensor, output: Any, strength: float) -> None:
        problem = None
        if not isinstance(output, torch.Tensor):
            problem = f"returned a {type(output).__name__}, not a tensor"
        elif output.shape != x.shape:
            problem = f"returned shape {tuple(output.shape)} for an input of shape {tuple(x.shape)}"
        elif output.dtype != x.dtype:
            problem = f"returned dtype {output.dtype} for an input of dtype {x.dtype}"
        elif output.device != x.device:
            problem = f"returned a tensor on {output.device} for an input on {x.device}"
        elif not torch.equal(x, before):
            problem = "changed its input in place"
        elif output.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            problem = "returned a view of its input instead of a new tensor"
        elif not bool(torch.isfinite(output).all()):
            problem = "returned non-finite values (NaN or infinity)"
        if problem is not None:
            raise ALGError(
                f"filter {self.config.filter!r} from {self._provider()} {problem} at strength {strength}; "
                "a filter must return a new finite tensor of its input's shape, dtype and device"
            )

    def _provider(self) -> str:
        info = (self.registry or default_registry()).provider_of("filter", type(self.config.filter))
        return "an unregistered class" if info is None else info.provider
