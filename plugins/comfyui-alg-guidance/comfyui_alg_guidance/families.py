"""Where ComfyUI's video models keep the image condition, and how to low-pass it there.

ComfyUI hands every denoiser evaluation a list of conditioning entries per branch; each entry's `model_conds` maps
names to ComfyUI `COND*` objects that the model turns into inputs. Image-to-video models take the image in one of
two ways, and each family is served by one [`ComfyFamily`][comfyui_alg_guidance.families.ComfyFamily]:

- concatenated to the latent along the channels, as the entry `c_concat` (Wan 2.1 I2V and FLF2V, Wan 2.2 A14B):
  the low-passed branch gets entries whose `c_concat` has its image-latent channels low-passed (Wan's 4 mask
  channels are left as they are);
- written into the latent itself where the denoise mask keeps it (Wan 2.2 TI2V-5B, LTX-Video): ComfyUI's
  sampler puts the clean image latent where the mask is 0 before every evaluation, so the low-passed branch gets a
  latent whose kept part is low-passed: `where(mask == 0, LP(x * (mask == 0)), x)`. Where the mask is between 0
  and 1 (an image condition of strength below 1) the latent is part noise, and it is left as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

LowPass = Callable[[torch.Tensor, Any], torch.Tensor]
"""Low-passes a condition; the second argument tells conditions of one run apart, for the cache."""


@dataclass(frozen=True)
class ConcatenatedImage:
    """The image latent is a run of channels of the `c_concat` entry: `c_concat[:, start:stop]`.

    Attributes:
        start: The first image-latent channel.
        stop: One past the last (`None`: to the end).
    """

    start: int = 0
    stop: int | None = None

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """Copies of a branch's conditioning entries whose image-latent channels are low-passed."""
        if entries is None:
            return None
        return [self._low_passed(entry, low_pass) for entry in entries]

    def _low_passed(self, entry: dict, low_pass: LowPass) -> dict:
        model_conds = entry.get("model_conds", {})
        concat = model_conds.get("c_concat")
        if concat is None:
            return entry
        condition = concat.cond
        stop = condition.shape[1] if self.stop is None else self.stop
        image = low_pass(condition[:, self.start : stop], entry.get("uuid"))
        replaced = torch.cat([condition[:, : self.start], image.to(condition.dtype), condition[:, stop:]], dim=1)
        fresh = {**entry, "model_conds": {**model_conds, "c_concat": concat._copy_with(replaced)}}
        fresh["uuid"] = uuid.uuid4()  # its own identity for ComfyUI's per-entry bookkeeping
        return fresh

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """The latent of the low-passed branches: unchanged (the condition is in the entries)."""
        return x


@dataclass(frozen=True)
class KeptFrames:
    """The image latent is the part of the latent the denoise mask keeps (the mask is 0 there, 1 where denoised)."""

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """The entries are unchanged: the condition is in the latent."""
        return entries

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """`x` with the part the mask keeps (mask 0) low-passed; `x` itself when nothing is kept.

        The kept part holds the same clean image latent at every step, so its low-passed version is cached.
        """
        mask = _denoise_mask(entries)
        if mask is None:
            return x
        kept = (mask.to(x.device) == 0).expand_as(x)
        if not bool(kept.any()):
            return x
        return torch.where(kept, low_pass(x * kept, "kept latent"), x)


def _denoise_mask(entries: list[dict] | None) -> torch.Tensor | None:
    for entry in entries or ():
        mask = entry.get("model_conds", {}).get("denoise_mask")
        if mask is not None:
            return mask.cond
    return None


Condition = ConcatenatedImage | KeptFrames


@dataclass(frozen=True)
class ComfyFamily:
    """One ComfyUI model family that ALG serves.

    Attributes:
        name: What the docs and errors call it.
        model_class: The name of the `comfy.model_base` class.
        condition: Where the image condition sits.
        preset: The alg-guidance preset for it.
        applies: Whether a model of that class is the image-to-video variant.
    """

    name: str
    model_class: str
    condition: Condition
    preset: str
    applies: Callable[[Any], bool] = lambda model: True


def _wan_concat_channels(model: Any) -> bool:
    """Wan 2.1 I2V-style concatenation: the patch embedding takes 16 latent + 4 mask + 16 image channels.

    The channels decide, not ComfyUI's `image_to_video` flag: Wan 2.2 A14B I2V's experts have no CLIP image
    embedding, so ComfyUI loads them with its text-to-video config (`image_to_video` False), and still concatenates
    the mask and the image latent to the latent.
    """
    return model.diffusion_model.patch_embedding.weight.shape[1] == 36


FAMILIES: tuple[ComfyFamily, ...] = (
    ComfyFamily(
        "Wan 2.1 I2V / FLF2V, Wan 2.2 A14B I2V", "WAN21", ConcatenatedImage(start=4), "wan2.1", _wan_concat_channels
    ),
    ComfyFamily("Wan 2.2 TI2V-5B", "WAN22", KeptFrames(), "wan2.2"),
    ComfyFamily("LTX-Video", "LTXV", KeptFrames(), "ltx-video"),
)
"""Every served family; the first whose class and condition match a model serves it."""

NOT_SERVED: dict[str, str] = {
    "HunyuanVideoI2V": (
        "HunyuanVideo I2V in ComfyUI conditions through its LLaVA image tokens and a guiding latent frame that the "
        "model reads from its own inputs (`guiding_frame_index`, `ref_latent`), not through a latent ALG can reach"
    ),
    "HunyuanVideoSkyreelsI2V": "not served yet: its image channels have not been checked against ComfyUI's model",
    "HunyuanVideo15": "not served yet: its c_concat layout (image latent and mask) has not been checked in ComfyUI",
    "CogVideoX": "not served yet: its c_concat image latent has not been checked against ComfyUI's model",
    "LTXAV": "not served yet: LTX-2's audio-video latent has not been checked against ComfyUI's model",
}
"""Video model classes of ComfyUI that ALG does not serve, with the reason."""


def family_of(model: Any) -> ComfyFamily:
    """The family serving a ComfyUI `BaseModel` (a ModelPatcher's `.model`).

    Raises:
        ValueError: No family serves it; the message names the model and lists the served families.
    """
    name = type(model).__name__
    classes = {cls.__name__ for cls in type(model).__mro__}
    for family in FAMILIES:
        if family.model_class == name and family.applies(model):
            return family
    why = NOT_SERVED.get(name) or next((NOT_SERVED[c] for c in classes if c in NOT_SERVED), None)
    served = "; ".join(family.name for family in FAMILIES)
    reason = f": {why}" if why else " (a text-to-video model, or one ALG has no image condition for)"
    raise ValueError(f"ALG does not serve this {name} model{reason}. Served: {served}")
