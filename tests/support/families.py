"""Every tiny pipeline family the tests build, by adapter name, for tests that run on all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Family:
    """How to build and run one tiny pipeline.

    Attributes:
        adapter: The registry name of the adapter that serves it.
        make: Builds the pipeline (seeded, so two calls give equal weights).
        call: Keyword arguments for a short run (`call(seed=0, **overrides)`), `output_type="latent"`.
        denoisers: Attribute names of the pipeline's denoisers.
        counted: A submodule every model evaluation runs once (to count evaluations and their batch).
    """

    adapter: str
    make: Callable[[], Any]
    call: Callable[..., dict[str, Any]]
    denoisers: tuple[str, ...] = ("transformer",)
    counted: str = "proj_out"

    def run(self, pipe: Any, **overrides: Any) -> torch.Tensor:
        """The latent video of one run."""
        return pipe(**self.call(**overrides)).frames


def all_families() -> dict[str, Family]:
    """Every family, by adapter name."""
    from . import (
        tiny_cogvideox,
        tiny_cosmos,
        tiny_easyanimate,
        tiny_hunyuan,
        tiny_hunyuan_variants,
        tiny_ltx,
        tiny_ltx2,
        tiny_motif,
        tiny_sana_kandinsky,
        tiny_svd,
        tiny_wan,
        tiny_wanplus,
    )

    families: dict[str, Family] = {}
    modules = (tiny_wan, tiny_cogvideox, tiny_hunyuan, tiny_ltx, tiny_svd)
    modules += (tiny_hunyuan_variants, tiny_sana_kandinsky, tiny_wanplus, tiny_easyanimate, tiny_ltx2)
    modules += (tiny_motif, tiny_cosmos)
    for module in modules:
        families.update(module.FAMILIES)
    return families
