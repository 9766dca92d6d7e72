"""Model adapters: per-model-family knowledge of where the image condition sits and how CFG runs."""

from __future__ import annotations

from ..hookspecs import hookimpl
from . import (
    cogvideox,
    cosmos,
    easyanimate,
    hunyuan,
    hunyuan_variants,
    ltx,
    ltx2,
    motif,
    sana_kandinsky,
    skyreels_df,
    svd,
    wan,
    wan_extras,
)
from .base import Adapter
from .layouts import ChannelSlice, ConditionLayout, FirstFrame, PackedFirstFrame

__all__ = ["Adapter", "ChannelSlice", "ConditionLayout", "FirstFrame", "PackedFirstFrame"]

BUILTIN_ADAPTERS: tuple[type[Adapter], ...] = (
    *wan.ADAPTERS,
    *cogvideox.ADAPTERS,
    *hunyuan.ADAPTERS,
    *ltx.ADAPTERS,
    *svd.ADAPTERS,
    *hunyuan_variants.ADAPTERS,
    *skyreels_df.ADAPTERS,
    *sana_kandinsky.ADAPTERS,
    *wan_extras.ADAPTERS,
    *easyanimate.ADAPTERS,
    *ltx2.ADAPTERS,
    *motif.ADAPTERS,
    *cosmos.ADAPTERS,
)


@hookimpl
def alg_register_adapters(register) -> None:
    """Register the builtin adapters."""
    for adapter_class in BUILTIN_ADAPTERS:
        register(adapter_class)
