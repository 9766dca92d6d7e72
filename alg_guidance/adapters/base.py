"""The base class every model adapter derives from."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch

from ..errors import ALGError
from .layouts import ConditionLayout


class Adapter:
    """What alg-guidance needs to know about one model family.

    An adapter is made for one pipeline (`Adapter(pipeline)`) and tells the integrations:

    - which pipelines it serves (`pipelines`, [`matches`][alg_guidance.adapters.base.Adapter.matches]);
    - which modules are the denoisers ([`denoisers`][alg_guidance.adapters.base.Adapter.denoisers]);
    - where the image condition sits in their inputs ([`layout`][alg_guidance.adapters.base.Adapter.layout]);
    - how the pipeline runs classifier-free guidance (`guidance`): `"batched"` pipelines call the denoiser
      once on `[uncond, cond]`, `"sequential"` ones call it for cond and then for uncond, telling the calls
      apart by the cache-context names in `contexts` (or, if `contexts` is `None`, by their order);
    - which denoiser inputs carry the batch (`batched_inputs`), so that branches can be split and merged;
    - optionally, how to encode a low-passed pixel image into a condition (pixel space).

    Attributes:
        name: The registry name, e.g. `"wan2.1"`.
        pipelines: Class names of the diffusers pipelines it serves.
        guidance: `"batched"` or `"sequential"`.
        contexts: For sequential guidance, the cache-context names of the cond and uncond calls.
        batched_inputs: Denoiser inputs whose first dimension is the batch.
        uncond_sees_image: `False` when the unconditional branch gets no image at all (SVD's zero image):
            ALG then reduces to CFG with a low-passed conditional image and needs no extra branch.
        pixel_capture: The pipeline method that receives the preprocessed pixel images of a run, recorded for
            pixel-space filtering; `None` if the adapter supports latent space only.
        needs_capture: Whether the adapter also reads the recorded `pixel_capture` call in latent space (to find
            its condition), so that the engine records it in either space.
        preset: The preset `alg_guidance.enable` uses when given no config.
    """

    name: ClassVar[str]
    pipelines: ClassVar[tuple[str, ...]] = ()
    guidance: ClassVar[Literal["batched", "sequential"]] = "sequential"
    contexts: ClassVar[tuple[str, str] | None] = ("cond", "uncond")
    batched_inputs: ClassVar[tuple[str, ...]] = ("hidden_states", "timestep", "encoder_hidden_states")
    uncond_sees_image: ClassVar[bool] = True
    pixel_capture: ClassVar[str | None] = None
    needs_capture: ClassVar[bool] = False
    preset: ClassVar[str] = "paper"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.captured: inspect.BoundArguments | None = None
        self.captured_result: Any = None

    @classmethod
    def matches(cls, pipeline: object) -> bool:
        """Whether this adapter serves `pipeline`; by default, whether its class name is in `pipelines`."""
        return type(pipeline).__name__ in cls.pipelines

    def denoisers(self) -> list[torch.nn.Module]:
        """The modules whose calls ALG guides: `transformer`, and `transformer_2` when the pipeline has one."""
        modules = [getattr(self.pipeline, name, None) for name in ("transformer", "transformer_2")]
        return [module for module in modules if module is not None]

    def layout(self) -> ConditionLayout:
        """Where the image condition sits in the denoiser's inputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement layout()")

    def uses_cfg(self) -> bool | None:
        """Whether the pipeline's current run uses classifier-free guidance; `None` if it cannot tell.

        Asked once per run. Sequential pipelines need no answer (the uncond call either comes or not);
        batched ones must give one, to know whether the batch holds `[uncond, cond]`.
        """
        return bool(self.pipeline.do_classifier_free_guidance)

    def encode_pixels(self, low_pass: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The latent condition (shaped as `layout().get` returns it) of the run's low-passed pixel images.

        Called once per run and strength. `captured` holds the arguments of the run's call to
        `pixel_capture`, and `captured_result` what it returned.

        Args:
            low_pass: The filter at the current strength; apply it to each pixel image before encoding.
        """
        raise ALGError(f"the {self.name} adapter filters in latent space only; use space='latent'")

    def captured_arguments(self) -> dict[str, Any]:
        """The arguments of the run's call to `pixel_capture`, by name."""
        if self.captured is None:
            raise ALGError(
                f"pixel-space ALG found no image: the pipeline did not call {self.pixel_capture}() in this run"
            )
        return dict(self.captured.arguments)
