"""The ComfyUI nodes: ALG on a MODEL, and a preview of its strengths over a sigma list."""

from __future__ import annotations

from typing import Any

import torch

from alg_guidance.engine import SigmaProgress
from alg_guidance.schedules import noise_level_from_sigma

from .config import AUTO, build_config, preset_names
from .families import family_of
from .guidance import ALGCondBatch
from .preview import draw_strengths

CATEGORY = "sampling/alg_guidance"
SETTINGS_TOOLTIP = (
    "YAML overrides on the preset, e.g. 'filter.factor: 0.3' or 'schedule: {kind: adaptive, threshold: 0.9}'"
)


def _config_inputs() -> dict[str, Any]:
    return {
        "preset": (preset_names(), {"default": AUTO, "tooltip": "auto: the preset of the model's family"}),
        "settings": ("STRING", {"default": "", "multiline": True, "tooltip": SETTINGS_TOOLTIP}),
        "config_file": ("STRING", {"default": "", "tooltip": "a .yaml/.yml/.json ALG config; replaces the preset"}),
    }


class _ConfiguredNode:
    """What both nodes share: the config widgets, validated by ComfyUI before anything runs."""

    CATEGORY = CATEGORY

    @classmethod
    def VALIDATE_INPUTS(cls, preset: str, settings: str, config_file: str) -> bool | str:
        """True, or why the settings are invalid (ComfyUI shows it on the node)."""
        try:
            build_config(preset, settings, config_file)
        except ValueError as error:
            return str(error)
        return True


def _is_flow(model: Any) -> bool:
    """Whether the model's sigma is the flow-matching time (ComfyUI's `CONST` model sampling)."""
    import comfy.model_sampling

    return isinstance(model.model_sampling, comfy.model_sampling.CONST)


class ALGGuidance(_ConfiguredNode):
    """Adaptive Low-Pass Guidance on a video MODEL, for every ComfyUI sampler.

    While the schedule's strength is above zero, the image condition is low-passed in the guidance terms:
    `D(x, I, ∅) + cfg * (D(x, LP(I), c) - D(x, LP(I), ∅))`, three model evaluations; once it is zero, plain CFG.
    At CFG 1 (ComfyUI skips the negative branch) one evaluation with the low-passed condition. The strength comes
    from the sigma of each evaluation, so any scheduler, sigma list and sampler works.
    """

    DESCRIPTION = __doc__
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        """The node's inputs."""
        return {"required": {"model": ("MODEL",), **_config_inputs()}}

    def patch(self, model: Any, preset: str, settings: str, config_file: str) -> tuple[Any]:
        """A clone of `model` that samples with ALG."""
        family = family_of(model.model)
        config = build_config(preset, settings, config_file, default_preset=family.preset)
        patched = model.clone()
        inner = patched.model_options.get("sampler_calc_cond_batch_function")
        if isinstance(inner, ALGCondBatch):  # ALG applied again: the node applied last decides, as with any setting
            inner = inner.inner
        patched.set_model_sampler_calc_cond_batch_function(
            ALGCondBatch(config, family, flow_sigmas=_is_flow(model.model), inner=inner)
        )
        return (patched,)


class ALGSchedulePreview(_ConfiguredNode):
    """The ALG strength at every step of a sigma list, as an image: see the window before sampling."""

    DESCRIPTION = __doc__
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "preview"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        """The node's inputs."""
        return {
            "required": {"sigmas": ("SIGMAS",), **_config_inputs()},
            "optional": {"model": ("MODEL", {"tooltip": "the model's family picks 'auto' and its sigma convention"})},
        }

    def preview(
        self, sigmas: torch.Tensor, preset: str, settings: str, config_file: str, model: Any = None
    ) -> tuple[torch.Tensor]:
        """An IMAGE of the strength at each step's sigma."""
        default = family_of(model.model).preset if model is not None else "paper"
        config = build_config(preset, settings, config_file, default_preset=default)
        flow = model is not None and _is_flow(model.model)
        progress = SigmaProgress(sigmas, float if flow else noise_level_from_sigma)
        strengths = [config.schedule(progress.state(float(sigma))) for sigma in progress.sigmas[:-1]]
        return (draw_strengths(strengths, progress.sigmas[:-1], title=f"ALG: {config.schedule!r}"),)


NODE_CLASS_MAPPINGS = {"ALGGuidance": ALGGuidance, "ALGSchedulePreview": ALGSchedulePreview}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ALGGuidance": "ALG Guidance (low-pass image)",
    "ALGSchedulePreview": "ALG Schedule Preview",
}
