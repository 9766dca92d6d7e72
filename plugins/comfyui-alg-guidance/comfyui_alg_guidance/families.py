"""Where ComfyUI's video models keep the image condition, and how to low-pass it there.

ComfyUI hands every denoiser evaluation a list of conditioning entries per branch; each entry's `model_conds` maps
names to ComfyUI `COND*` objects that the model turns into inputs. Image-to-video models take the image in one of
these ways, and each family is served by one [`ComfyFamily`][comfyui_alg_guidance.families.ComfyFamily]:

- concatenated to the latent along the channels, as the entry `c_concat` (Wan 2.1 I2V and FLF2V, Wan 2.2 A14B,
  HunyuanVideo I2V 33-channel and SkyReels, HunyuanVideo 1.5 I2V, CogVideoX I2V): the low-passed branch gets
  entries whose `c_concat` has its image-latent channels low-passed (mask channels are left as they are);
- as a latent of its own in the entry, `ref_latent` (HunyuanVideo with `HunyuanImageToVideo`'s `custom` guidance),
  which the model puts in front of the video tokens: low-passed in the entries like `c_concat`;
- written into the latent itself where the denoise mask keeps it (Wan 2.2 TI2V-5B, LTX-Video, LTX-2's video part):
  ComfyUI's sampler puts the clean image latent where the mask is 0 before every evaluation, so the low-passed
  branch gets a latent whose kept part is low-passed: `where(mask == 0, LP(x * (mask == 0)), x)`. Where the mask
  is between 0 and 1 (an image condition of strength below 1) the latent is part noise, and it is left as it is;
- written into latent frame 0, which the model reads as clean through `guiding_frame_index` (HunyuanVideo I2V with
  `HunyuanImageToVideo`'s `v2 (replace)` guidance, the token-replace model): latent frame 0 is low-passed.

A condition hands back its input itself (`entries`, `x`) where it finds nothing to low-pass, so that a step with no
image condition is evaluated as plain CFG.
"""

from __future__ import annotations

import math
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

        def channels(condition: torch.Tensor, key: Any) -> torch.Tensor:
            stop = condition.shape[1] if self.stop is None else self.stop
            image = low_pass(condition[:, self.start : stop], key).to(condition.dtype)
            return torch.cat([condition[:, : self.start], image, condition[:, stop:]], dim=1)

        return _low_passed_in_entries(entries, "c_concat", channels)

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """The latent of the low-passed branches: unchanged (the condition is in the entries)."""
        return x


@dataclass(frozen=True)
class ReferenceLatent:
    """The image latent is an entry of its own, `ref_latent`, that the model reads beside the latent."""

    key: str = "ref_latent"

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """Copies of a branch's conditioning entries whose reference latent is low-passed."""
        return _low_passed_in_entries(entries, self.key, lambda latent, key: low_pass(latent, key).to(latent.dtype))

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """The latent of the low-passed branches: unchanged (the condition is in the entries)."""
        return x


def _low_passed_in_entries(entries: list[dict] | None, name: str, replace: Callable) -> list[dict] | None:
    """`entries` with `replace(tensor, entry uuid)` in place of each `model_conds[name]`; `entries` if none has one."""
    if entries is None or not any(name in entry.get("model_conds", {}) for entry in entries):
        return entries
    fresh = []
    for entry in entries:
        model_conds = entry.get("model_conds", {})
        cond = model_conds.get(name)
        if cond is None:
            fresh.append(entry)
            continue
        replaced = cond._copy_with(replace(cond.cond, entry.get("uuid")))
        # its own identity for ComfyUI's per-entry bookkeeping
        fresh.append({**entry, "model_conds": {**model_conds, name: replaced}, "uuid": uuid.uuid4()})
    return fresh


@dataclass(frozen=True)
class KeptFrames:
    """The image latent is the part of the latent the denoise mask keeps (the mask is 0 there, 1 where denoised)."""

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """The entries are unchanged: the condition is in the latent."""
        return entries

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """`x` with the part the mask keeps (mask 0) low-passed; `x` itself when nothing is kept.

        The kept part holds the same clean image latent at every step, so its low-passed version is cached. An
        audio-video latent (LTX-2) comes packed, `[B, 1, N]`, with the shapes of its parts in `latent_shapes` and
        the video part first; its `denoise_mask` is the video part's, so the video part is unpacked, low-passed
        and packed back.
        """
        mask = _model_cond(entries, "denoise_mask")
        if mask is None:
            return x
        shapes = _model_cond(entries, "latent_shapes")
        if shapes is None or len(shapes) < 2:
            return _low_passed_kept(x, mask, low_pass)
        size = math.prod(shapes[0][1:])
        video = x[:, :, :size].reshape(x.shape[0], *shapes[0][1:])
        low_passed = _low_passed_kept(video, mask, low_pass)
        if low_passed is video:
            return x
        return torch.cat([low_passed.reshape(x.shape[0], 1, size), x[:, :, size:]], dim=2)


def _low_passed_kept(x: torch.Tensor, mask: torch.Tensor, low_pass: LowPass) -> torch.Tensor:
    kept = (mask.to(x.device) == 0).expand_as(x)
    if not bool(kept.any()):
        return x
    return torch.where(kept, low_pass(x * kept, "kept latent"), x)


@dataclass(frozen=True)
class GuidingFrame:
    """The image latent is latent frame 0, kept by the sampler's noise mask, read as clean by the model.

    HunyuanVideo's token replacement: where the entries carry `guiding_frame_index`, the model modulates the tokens
    of latent frame 0 with the embedding of time 0.
    """

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """The entries are unchanged: the condition is in the latent."""
        return entries

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """`x` with latent frame 0 low-passed where the entries carry `guiding_frame_index`, else `x` itself."""
        if _model_cond(entries, "guiding_frame_index") is None:
            return x
        frame = low_pass(x[:, :, :1], "guiding frame").to(x.dtype)
        return torch.cat([frame, x[:, :, 1:]], dim=2)


@dataclass(frozen=True)
class AnyOf:
    """Several places a family may keep the image, each left alone where the conditioning does not use it."""

    parts: tuple[ConcatenatedImage | ReferenceLatent | KeptFrames | GuidingFrame, ...]

    def low_passed_entries(self, entries: list[dict] | None, low_pass: LowPass) -> list[dict] | None:
        """The entries low-passed by every part in turn."""
        for part in self.parts:
            entries = part.low_passed_entries(entries, low_pass)
        return entries

    def low_passed_input(self, x: torch.Tensor, entries: list[dict] | None, low_pass: LowPass) -> torch.Tensor:
        """The latent low-passed by every part in turn."""
        for part in self.parts:
            x = part.low_passed_input(x, entries, low_pass)
        return x


def _model_cond(entries: list[dict] | None, name: str) -> Any:
    """The value of the first `model_conds[name]` among the entries, or `None`."""
    for entry in entries or ():
        cond = entry.get("model_conds", {}).get(name)
        if cond is not None:
            return cond.cond
    return None


Condition = ConcatenatedImage | ReferenceLatent | KeptFrames | GuidingFrame | AnyOf


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


def _cogvideox_i2v(model: Any) -> bool:
    """CogVideoX I2V (1.0 and 1.5): 16 latent + 16 image-latent input channels.

    Text-to-video has 16, CogVideoX-Fun inpainting 48.
    """
    return model.diffusion_model.in_channels == 32


FAMILIES: tuple[ComfyFamily, ...] = (
    ComfyFamily(
        "Wan 2.1 I2V / FLF2V, Wan 2.2 A14B I2V", "WAN21", ConcatenatedImage(start=4), "wan2.1", _wan_concat_channels
    ),
    ComfyFamily("Wan 2.2 TI2V-5B", "WAN22", KeptFrames(), "wan2.2"),
    ComfyFamily("LTX-Video", "LTXV", KeptFrames(), "ltx-video"),
    ComfyFamily("LTX-2 (audio-video)", "LTXAV", KeptFrames(), "paper"),
    ComfyFamily(
        "HunyuanVideo I2V (token replace: guiding frame, or ref_latent)",
        "HunyuanVideo",
        AnyOf((GuidingFrame(), ReferenceLatent())),
        "hunyuanvideo",
    ),
    ComfyFamily("HunyuanVideo I2V 33-channel", "HunyuanVideoI2V", ConcatenatedImage(start=0, stop=16), "paper"),
    ComfyFamily("SkyReels V1 Hunyuan I2V", "HunyuanVideoSkyreelsI2V", ConcatenatedImage(start=0, stop=16), "paper"),
    ComfyFamily("HunyuanVideo 1.5 I2V", "HunyuanVideo15", ConcatenatedImage(start=0, stop=32), "paper"),
    ComfyFamily("CogVideoX I2V", "CogVideoX", ConcatenatedImage(start=0, stop=16), "cogvideox", _cogvideox_i2v),
)
"""Every served family; the first whose class and condition match a model serves it."""

NOT_SERVED: dict[str, str] = {
    "CogVideoX": (
        "only CogVideoX I2V (32 input channels: the image latent in c_concat) is served; with 16 input channels it "
        "is text-to-video, and with 48 it is CogVideoX-Fun inpainting (VOIDInpaintConditioning), whose c_concat "
        "holds a mask latent and a masked-video latent, a video to inpaint rather than an image condition"
    ),
    "HunyuanVideo15_SR_Distilled": (
        "the HunyuanVideo 1.5 super-resolution model takes the low-resolution video to upscale in c_concat, not an "
        "image condition"
    ),
}
"""Video model classes of ComfyUI, or variants of a served class, that ALG does not serve, with the reason."""


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
