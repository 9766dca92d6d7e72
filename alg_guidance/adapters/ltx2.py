"""Adapter for LTX-2 image-to-video (`LTX2ImageToVideoPipeline`): video and audio from one transformer.

`LTX2VideoTransformer3DModel` denoises a packed video `[B, F * H * W, C]` and a packed audio sequence together and
returns both predictions. The image latent is latent frame 0, the first `H * W` video tokens (patch sizes 1, as in
the released checkpoints), kept out of denoising by a per-token timestep 0, exactly as in LTX-Video's
`LTXImageToVideoPipeline`. Each step calls the transformer once on `[uncond, cond]` (cache context `"cond_uncond"`)
and, with the pipeline's default settings, twice more on the cond batch alone: spatio-temporal guidance
(`"uncond_stg"`, attention skipped in some blocks) and modality-isolation guidance (`"uncond_modality"`, audio-video
cross-attention off). ALG combines the video and the audio predictions by the same rule (the audio hears the image
through cross-attention), and evaluates the two perturbed calls with the low-passed image, shifted by
`u_orig - u_lp` like the cond prediction (see `Adapter.perturbed_contexts`): the step's prediction is then the
pipeline's whole guidance computed with the low-passed image, anchored at the unconditional prediction with the
original image - ALG's rule, with every guidance term included.
"""

from __future__ import annotations

from .base import Adapter
from .ltx import LTXVideoI2V

LTX2_BATCHED_INPUTS = (
    "hidden_states",
    "audio_hidden_states",
    "encoder_hidden_states",
    "audio_encoder_hidden_states",
    "timestep",
    "audio_timestep",
    "sigma",
    "encoder_attention_mask",
    "audio_encoder_attention_mask",
    "video_coords",
    "audio_coords",
)

LTX2_K_DIFFUSION = (
    "the image latent replaces latent frame 0, which the pipeline keeps out of denoising (per-token timestep 0), "
    "and the transformer denoises an audio track along with the video, while k-diffusion's samplers step one "
    "latent at one sigma"
)


class LTX2I2V(LTXVideoI2V):
    """LTX-2 image-to-video (`LTX2ImageToVideoPipeline`): latent frame 0, the first video tokens; video and audio.

    Pixel space encodes the low-passed image with the VAE posterior's mode, as the pipeline itself does
    (`sample_mode="argmax"`), normalized with the VAE's latent statistics. The H.264 re-compression the pipeline
    applies first (`image_crf`) is part of the captured image, so the filter acts on the re-compressed image.
    """

    name = "ltx2"
    pipelines = ("LTX2ImageToVideoPipeline",)
    batched_inputs = LTX2_BATCHED_INPUTS
    preset = "ltx2"
    k_diffusion_refusal = LTX2_K_DIFFUSION
    predictions = 2
    perturbed_contexts = ("uncond_stg", "uncond_modality")


ADAPTERS: tuple[type[Adapter], ...] = (LTX2I2V,)
