"""The base class every model adapter derives from."""

from __future__ import annotations

from typing import ClassVar


class Adapter:
    """Knowledge of one model family: which pipelines it serves and where their image condition sits.

    Subclasses set `name` (the registry name) and `pipelines` (the class names of the diffusers pipelines
    they serve) and may override [`matches`][alg_guidance.adapters.base.Adapter.matches].
    """

    name: ClassVar[str]
    pipelines: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def matches(cls, pipeline: object) -> bool:
        """Whether this adapter serves `pipeline`; by default, whether its class name is in `pipelines`."""
        return type(pipeline).__name__ in cls.pipelines
