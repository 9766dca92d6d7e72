"""The base of adapters for pipelines that combine their predictions through a diffusers CFG guider."""

from __future__ import annotations

from typing import Any

from ..errors import ALGError
from .base import Adapter

EXACT_GUIDER = "ClassifierFreeGuidance"
"""The one guider whose combination, `u + w (c - u)`, ALG's branch rule reproduces exactly through `alg.enable`."""


class CFGGuided(Adapter):
    """A pipeline whose `guider` combines the cond and uncond predictions; served while it is `EXACT_GUIDER`.

    Any other guider is refused with the way to combine ALG with it: the guider
    [`ALGGuidance`][alg_guidance.integrations.diffusers.guider.ALGGuidance].
    """

    def refusal(self, pipeline: object) -> str | None:
        """Also refuses a guider other than `ClassifierFreeGuidance`."""
        return super().refusal(pipeline) or guider_refusal(pipeline)

    def uses_cfg(self, pipeline: Any) -> bool | None:
        """`None`: the guider decides per step (its `start`/`stop` window); checks the guider is still exact.

        Raises:
            ALGError: The pipeline's guider was swapped for another since `enable`.
        """
        refusal = guider_refusal(pipeline)
        if refusal is not None:
            raise ALGError(f"the {self.name} adapter cannot run: {refusal}")
        return None


def guider_refusal(pipeline: Any) -> str | None:
    """Why `pipeline`'s guider keeps `alg.enable` from serving it, or `None` for `ClassifierFreeGuidance`."""
    guider = type(pipeline.guider).__name__
    if guider != EXACT_GUIDER:
        return (
            f"the pipeline's guider is {guider}, not {EXACT_GUIDER}: ALG's branch rule is exact only for a guider "
            "that combines the two predictions as u + w (c - u); for any other guider, set "
            "pipe.guider = alg.ALGGuidance(pipe.guider) instead of alg.enable"
        )
    return None
