"""The base class every model adapter derives from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from ..errors import ALGError
from .layouts import ConditionLayout


@dataclass(frozen=True)
class Capture:
    """One recorded call of a pipeline method in a run: its arguments by name, and what it returned.

    Attributes:
        arguments: The call's arguments, defaults applied.
        result: The method's return value.
    """

    arguments: dict[str, Any]
    result: Any


Captures = Mapping[str, Capture]
"""The pipeline-method calls a run recorded, by method name (see `Adapter.captures`)."""


class Adapter:
    """What alg-guidance knows about one model family: a stateless description, shared by every pipeline it serves.

    An adapter holds no state of a pipeline or of a run: every method takes the pipeline (and, where it needs
    them, the calls the run recorded), so one adapter object serves any number of pipelines at once. It tells
    the integrations:

    - which pipelines it serves (`pipelines`, [`refusal`][alg_guidance.adapters.base.Adapter.refusal]);
    - which modules are the denoiser ([`denoisers`][alg_guidance.adapters.base.Adapter.denoisers]);
    - where the image condition sits in their inputs ([`layout`][alg_guidance.adapters.base.Adapter.layout]);
    - how the pipeline runs classifier-free guidance (`guidance`): `"batched"` pipelines call the denoiser
      once on `[uncond, cond]`, `"sequential"` ones call it for cond and then for uncond, telling the calls
      apart by the cache-context names in `contexts` (or, if `contexts` is `None`, by their order), and which of
      a sequential pipeline's two predictions carries ALG's correction (`shift_target`);
    - which denoiser inputs carry the batch (`batched_inputs`), so that branches can be split and merged;
    - optionally, how to rebuild the condition from a low-passed pixel image (pixel space), and the
      full-precision condition the pipeline prepared before casting it for the denoiser;
    - for sampling with k-diffusion ([`from_pipeline`][alg_guidance.integrations.k_diffusion.pipeline.from_pipeline]):
      the run's CFG scale ([`guidance_scale`][alg_guidance.adapters.base.Adapter.guidance_scale]), how final
      latents decode ([`decode`][alg_guidance.adapters.base.Adapter.decode]), or why the family cannot be sampled
      that way (`k_diffusion_refusal`).

    Attributes:
        name: The registry name, e.g. `"wan2.1"`.
        pipelines: Class names of the diffusers pipelines it serves.
        guidance: `"batched"` or `"sequential"`.
        contexts: For sequential guidance, the cache-context names of the cond and uncond calls.
        shift_target: For sequential guidance, where ALG's correction goes. `"cond"` (the default): the cond call
            returns `c_lp` and the shift `u_orig - u_lp` is added in place into that tensor once the uncond call has
            run, which needs a pipeline that keeps the tensor it got. `"uncond"`: for a pipeline that copies or
            transforms the cond prediction before its uncond call, the cond call returns `c_lp` unchanged and the
            uncond call `u_lp + (u_orig - u_lp) / (1 - w)`, with `w` from
            [`guidance_scale`][alg_guidance.adapters.base.Adapter.guidance_scale] at that call: the scale of the
            pipeline's own `u + w (c - u)` (for `c + w (c - u)`, `w + 1`). See [`plan`][alg_guidance.engine.plan].
        float32_predictions: Whether the cond prediction of a filtered step may come back in float32, so that the
            pipeline's own CFG runs in float32 (see [`plan`][alg_guidance.engine.plan]). `False` for pipelines that
            step their latents in the prediction's dtype and hand them to the denoiser without casting them to its
            dtype (HunyuanVideo 1.5, EasyAnimate): predictions then keep the denoiser's dtype.
        batched_inputs: Denoiser inputs whose first dimension is the batch.
        uncond_sees_image: `False` when the unconditional branch gets no image at all (SVD's zero image):
            ALG then reduces to CFG with a low-passed conditional image and needs no extra branch.
        captures: The pipeline method whose calls each run records (its arguments and result), for the adapter
            to read the run's images, latents or condition; `None` if the adapter needs none.
        pixel_space: Whether the adapter can rebuild the condition from a low-passed pixel image.
        denoiser_names: The pipeline attributes holding denoisers, guided when present.
        preset: The preset `alg_guidance.enable` uses when given no config.
        k_diffusion_refusal: Why k-diffusion samplers cannot sample this family through `from_pipeline`, or
            `None` if they can.
        steps_scheduler: Whether the pipeline steps its own `scheduler`, whose `step_index` then says where the run
            stands. `False` for pipelines that step copies of it (SkyReels-V2 diffusion forcing keeps one per latent
            frame): the run then counts the steps its denoiser calls start, and takes their number from
            [`num_steps`][alg_guidance.adapters.base.Adapter.num_steps].
        batches_branches: Whether ALG's branches can run stacked in one denoiser call (`batch_branches`); `False`
            when the denoiser takes a per-sample input it cannot split or stack (SkyReels-V2 diffusion forcing's
            `fps` list), so that every branch runs as a call of its own.
        guider_denoisers: Class names of the denoisers whose condition the diffusers guider
            [`ALGGuidance`][alg_guidance.integrations.diffusers.guider.ALGGuidance] can low-pass (see
            [`guider_layout`][alg_guidance.adapters.base.Adapter.guider_layout]).
        predictions: How many leading items of the denoiser's output are predictions that ALG combines, each by the
            same rule (LTX-2's transformer predicts video and audio: 2). More than one needs batched guidance.
        perturbed_contexts: For batched guidance, the cache-context names of the extra calls a pipeline makes on the
            cond batch alone with a perturbed denoiser (LTX-2's spatio-temporal and modality-isolation guidance).
            ALG evaluates them with the low-passed condition and adds the step's `u_orig - u_lp`, as it does to the
            cond prediction: the pipeline's guidance, an affine combination whose weights sum to 1, then equals its
            guidance computed wholly with the low-passed condition, moved by `u_orig - u_lp`.
    """

    name: ClassVar[str]
    pipelines: ClassVar[tuple[str, ...]] = ()
    guidance: ClassVar[Literal["batched", "sequential"]] = "sequential"
    contexts: ClassVar[tuple[str, str] | None] = ("cond", "uncond")
    shift_target: ClassVar[Literal["cond", "uncond"]] = "cond"
    float32_predictions: ClassVar[bool] = True
    batched_inputs: ClassVar[tuple[str, ...]] = ("hidden_states", "timestep", "encoder_hidden_states")
    uncond_sees_image: ClassVar[bool] = True
    captures: ClassVar[str | None] = None
    pixel_space: ClassVar[bool] = False
    denoiser_names: ClassVar[tuple[str, ...]] = ("transformer", "transformer_2")
    preset: ClassVar[str] = "paper"
    k_diffusion_refusal: ClassVar[str | None] = None
    steps_scheduler: ClassVar[bool] = True
    batches_branches: ClassVar[bool] = True
    guider_denoisers: ClassVar[tuple[str, ...]] = ()
    predictions: ClassVar[int] = 1
    perturbed_contexts: ClassVar[tuple[str, ...]] = ()

    def refusal(self, pipeline: object) -> str | None:
        """Why this adapter cannot serve `pipeline`, or `None` if it can.

        The default checks the class name against `pipelines`, that the object is a diffusers pipeline, and that
        it has a denoiser module; families add their own conditions (a config value, a layout) by extending it.
        """
        name = type(pipeline).__name__
        if name not in self.pipelines:
            return f"it serves {', '.join(self.pipelines)}, not {name}"
        if not any(cls.__name__ == "DiffusionPipeline" for cls in type(pipeline).__mro__):
            return f"this {name} is not a diffusers DiffusionPipeline"
        if not self.denoisers(pipeline):
            return f"this {name} has no denoiser module ({' or '.join(self.denoiser_names)} is None or missing)"
        if self.captures is not None and not callable(getattr(type(pipeline), self.captures, None)):
            return f"this {name} has no {self.captures}() method, where the adapter reads the run's condition"
        return None

    def matches(self, pipeline: object) -> bool:
        """Whether this adapter serves `pipeline`."""
        return self.refusal(pipeline) is None

    def denoisers(self, pipeline: Any) -> list[torch.nn.Module]:
        """The modules whose calls ALG guides: those of `denoiser_names` the pipeline has."""
        modules = [getattr(pipeline, name, None) for name in self.denoiser_names]
        return [module for module in modules if isinstance(module, torch.nn.Module)]

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """Where the image condition sits in the denoiser's inputs during this run."""
        raise NotImplementedError(f"{type(self).__name__} must implement layout()")

    def guider_layout(self, denoiser: torch.nn.Module) -> ConditionLayout | None:
        """Where the image condition sits in `denoiser`'s inputs when a diffusers guider drives it; `None` if unknown.

        A guider sees the denoiser only, not the pipeline (modular pipelines and guider-driven ones such as
        HunyuanVideo 1.5), so the layout comes from the denoiser's class and config. The default knows none.
        """
        return None

    def uses_cfg(self, pipeline: Any) -> bool | None:
        """Whether the pipeline's current run uses classifier-free guidance; `None` if it cannot tell.

        Asked once per run, at its first denoiser call. Sequential pipelines need no answer (the uncond call
        either comes or not); batched ones must give one, to know whether the batch holds `[uncond, cond]`.
        """
        return bool(pipeline.do_classifier_free_guidance)

    def num_steps(self, pipeline: Any) -> int:
        """The number of denoising steps of the pipeline's current run, asked at its first denoiser call.

        The default counts the scheduler's timesteps; pipelines whose steps are not the scheduler's (see
        `steps_scheduler`) say how many they run.
        """
        return len(pipeline.scheduler.timesteps)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The condition as the pipeline prepared it before casting it for the denoiser, if it kept more precision.

        Shaped as `layout(...).get` returns it for one call; ALG filters it and casts once, instead of filtering
        the condition already rounded to the denoiser's dtype. `None` (the default) filters the call's condition.
        """
        return None

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The latent condition (shaped as `layout(...).get` returns it) of the run's low-passed pixel images.

        Called once per run and strength, only when `pixel_space` is set.

        Args:
            pipeline: The pipeline.
            captures: The run's recorded calls of the `captures` method.
            low_pass: The filter at the current strength; apply it to each pixel image before encoding.
        """
        raise ALGError(f"the {self.name} adapter filters in latent space only; use space='latent'")

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """The CFG scale of a pipeline call with `arguments` (its arguments by name, defaults applied).

        The scale is `w` of `u + w (c - u)`. The default reads the pipeline's `guidance_scale`, which the pipeline
        sets when called. With `shift_target = "uncond"` it is asked at each uncond call ALG corrects, during the
        run: it must be the scale of that step's combination.
        """
        return float(pipeline.guidance_scale)

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """The frames of final latents, as a call with `arguments` returns them (`output_type` "np", "pil", "pt").

        Families whose pipelines k-diffusion can sample implement it with the pipeline's own de-normalization and
        VAE; the default refuses.
        """
        raise ALGError(f"the {self.name} adapter does not decode latents outside its pipeline")

    def captured(self, captures: Captures) -> Capture:
        """The run's recorded call of the `captures` method.

        Raises:
            ALGError: The run did not call it (the pipeline was called in a way the adapter cannot read).
        """
        capture = captures.get(self.captures) if self.captures is not None else None
        if capture is None:
            raise ALGError(
                f"the {self.name} adapter found no record of this run's call to {self.captures}(), where it reads "
                "the image condition"
            )
        return capture

    def __repr__(self) -> str:
        return f"<{type(self).__name__} adapter {self.name!r}>"
