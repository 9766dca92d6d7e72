"""The node package loads the way ComfyUI loads custom nodes, and its example workflows run in ComfyUI's executor.

Each shipped workflow runs through `execution.PromptExecutor`, the executor ComfyUI's server runs every queued prompt
with, after ComfyUI's own `validate_prompt`; the executor reports to a stand-in for the server that keeps the
messages a client would get. The test shrinks the workflow's sizes and steps and writes tiny random-weight model
files (`comfy_files`) under the names the workflow's loaders give, in temporary model folders; ComfyUI's loaders
detect and build every model from those files.

The encoders are not under test (the ALG node, ComfyUI's samplers and its model patching are), but ComfyUI fixes
their sizes in JSON files of its tree (`umt5_config_xxl.json`, `t5_config_xxl.json`, `clip_vision_config_h.json`)
and recognises each by a key of its full size (T5-XXL's 24th block, CLIP-H's 31st layer). They are made tiny with
the least of ComfyUI replaced, and ComfyUI's code runs otherwise unchanged:

- the text encoders through ComfyUI's own override of a text encoder's config, `model_options["<model
  name>_model_config"]`, added to the options the CLIPLoader node hands `comfy.sd.load_clip` (it hands none);
- CLIP vision through ComfyUI's `ClipVisionModel`, which takes a config dict as well as a file name: the class is
  handed the tiny CLIP-H dict where ComfyUI names `clip_vision_config_h.json` (no override reaches it);
- the files carry the key each encoder is recognised by as an empty tensor, so that ComfyUI's detection runs as
  it is; the tiny model reports the key as unexpected, and ComfyUI drops it;
- tokenizers: Wan's UMT5 tokenizer is a SentencePiece model ComfyUI reads from the text encoder file
  (`spiece_model`), so the file carries a character-level one the test trains; LTX-Video's T5 tokenizer is
  ComfyUI's own, from its tree. Nothing is downloaded.

Wan's UNet reads 4096-wide text and 1280-wide CLIP image features, so those encoders keep those widths; LTX-Video's
caption width ComfyUI reads from the checkpoint's `config` metadata, where the test writes a small one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import uuid
from pathlib import Path

import comfy.clip_vision
import comfy.sd
import comfy_files as files
import execution
import folder_paths
import nodes
import numpy as np
import pytest
import torch
from PIL import Image

PACKAGE = Path(__file__).resolve().parents[1]
WORKFLOWS = {path.stem: path for path in sorted((PACKAGE / "example_workflows").glob("*.json"))}

MODEL_FILES = {  # file name: (model folder, writer, seed)
    "wan2.1_i2v_480p_14B_fp16.safetensors": ("diffusion_models", files.wan21_i2v, 1),
    "wan2.2_i2v_high_noise_14B_fp16.safetensors": ("diffusion_models", files.wan22_a14b_expert, 2),
    "wan2.2_i2v_low_noise_14B_fp16.safetensors": ("diffusion_models", files.wan22_a14b_expert, 3),
    "wan_2.1_vae.safetensors": ("vae", files.wan_vae, 4),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("text_encoders", files.umt5_xxl, 5),
    "clip_vision_h.safetensors": ("clip_vision", files.clip_vision_h, 6),
    "ltx-video-2b-v0.9.5.safetensors": ("checkpoints", files.ltxv_checkpoint, 7),
    "t5xxl_fp16.safetensors": ("text_encoders", files.t5_xxl, 8),
}
"""Every model file the workflows' loaders name."""
LORAS = {  # file name: (the expert it is for, seed)
    "wan2.2_i2v_lightx2v_4steps_lora_high_noise.safetensors": ("wan2.2_i2v_high_noise_14B_fp16.safetensors", 9),
    "wan2.2_i2v_lightx2v_4steps_lora_low_noise.safetensors": ("wan2.2_i2v_low_noise_14B_fp16.safetensors", 10),
}
"""Every LoRA file the workflows name."""
FILE_INPUTS = ("unet_name", "clip_name", "vae_name", "ckpt_name", "lora_name")

SMALL = {
    "WanImageToVideo": {"width": 64, "height": 64, "length": 5},  # 2 latent frames of 8x8
    "LTXVImgToVideo": {"width": 64, "height": 64, "length": 9},  # 2 latent frames of 2x2
    "KSampler": {"steps": 3},
    "LTXVScheduler": {"steps": 3},
}
"""The sizes and steps the workflows run with here, by node class; the Wan 2.2 workflow keeps its 4 steps."""
OFF = "schedule: {kind: constant, value: 0.0}"
BAR = (214, 90, 49)
"""The colour of a step's bar in the schedule preview."""


@pytest.fixture(scope="module")
def comfy_nodes():
    """ComfyUI's builtin and extra nodes, and this package loaded from its folder as a custom node."""
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    assert asyncio.run(nodes.load_custom_node(str(PACKAGE)))
    return nodes.NODE_CLASS_MAPPINGS


def test_the_package_loads_as_a_custom_node(comfy_nodes):
    assert {"ALGGuidance", "ALGSchedulePreview"} <= set(comfy_nodes)
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["ALGGuidance"] == "ALG Guidance (low-pass image)"


class TinyClipVision(comfy.clip_vision.ClipVisionModel):
    """ComfyUI's CLIP vision model, built from the tiny CLIP-H config where ComfyUI names CLIP-H's config file."""

    def __init__(self, json_config):
        tiny = isinstance(json_config, str) and Path(json_config).name == "clip_vision_config_h.json"
        super().__init__(files.CLIP_VISION_H if tiny else json_config)


@pytest.fixture(scope="module")
def comfy_folders(comfy_nodes, tmp_path_factory):
    """ComfyUI's model, input, output and temp folders in a temporary folder, holding every model file the workflows
    name and the input image; the encoders tiny (see the module docstring)."""
    root = tmp_path_factory.mktemp("comfyui")
    load_clip = comfy.sd.load_clip

    def load_tiny_clip(*args, model_options=None, **kwargs):
        return load_clip(*args, model_options={**(model_options or {}), **files.TEXT_ENCODER_CONFIGS}, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for folder in {"loras", *(folder for folder, *_ in MODEL_FILES.values())}:
            (root / folder).mkdir()
            patch.setitem(folder_paths.folder_names_and_paths, folder, ([str(root / folder)], {".safetensors"}))
        for kind in ("input", "output", "temp"):
            (root / kind).mkdir()
            patch.setattr(folder_paths, f"{kind}_directory", str(root / kind))
        patch.setattr(comfy.sd, "load_clip", load_tiny_clip)
        patch.setattr(comfy.clip_vision, "ClipVisionModel", TinyClipVision)
        written = {name: write(root / folder / name, seed) for name, (folder, write, seed) in MODEL_FILES.items()}
        for name, (expert, seed) in LORAS.items():
            files.wan_lora(root / "loras" / name, written[expert], seed)
        image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "input" / "example.png")
        yield root


class Executor:
    """ComfyUI's `PromptExecutor`, and the stand-in for the server it reports to, which keeps the messages."""

    client_id = None
    last_node_id = None

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []
        caches = {"lru": 0, "ram": 0, "ram_inactive": 0}
        self.executor = execution.PromptExecutor(self, cache_type=execution.CacheType.CLASSIC, cache_args=caches)

    def send_sync(self, event: str, data: dict, sid: str | None = None) -> None:
        self.messages.append((event, data))

    def run(self, prompt: dict) -> tuple[set[str], dict]:
        """Validate and execute `prompt` as ComfyUI's server does: the ids of the nodes that ran, and the outputs
        shown in the UI; an assertion error with ComfyUI's message if it failed."""
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        assert valid, (error, node_errors)
        self.messages.clear()
        self.executor.execute(prompt, prompt_id, {"client_id": "test"}, outputs)
        failures = [data for event, data in self.executor.status_messages if event == "execution_error"]
        assert not failures, "{node_type} failed: {exception_message}\n{tb}".format(
            tb="".join(failures[0]["traceback"]), **failures[0]
        )
        assert self.executor.success
        ran = {data["node"] for event, data in self.messages if event == "executing" and data["node"] is not None}
        return ran, self.executor.history_result["outputs"]

    def output(self, node_id: str) -> list:
        """What the node returned in the last run that ran it (ComfyUI keeps it in its output cache)."""
        return asyncio.run(self.executor.caches.outputs.get(node_id)).outputs


def small(workflow: str, **settings: str) -> dict:
    """The workflow's prompt with the sizes and steps of `SMALL`, and `settings` (node id: text) in its ALG nodes."""
    prompt = json.loads(WORKFLOWS[workflow].read_text())
    for node_id, node in prompt.items():
        node["inputs"].update(SMALL.get(node["class_type"], {}))
        for name in (node["inputs"].get(key) for key in FILE_INPUTS):
            assert name is None or name in MODEL_FILES or name in LORAS, f"{workflow} names {name}: add a tiny one"
        if node_id in settings:
            node["inputs"]["settings"] = settings[node_id]
    return prompt


def bypassed(prompt: dict, node_id: str) -> dict:
    """The prompt with a MODEL -> MODEL node bypassed as ComfyUI bypasses it: its consumers take its input."""
    prompt = copy.deepcopy(prompt)
    source = prompt.pop(node_id)["inputs"]["model"]
    for node in prompt.values():
        for key, value in node["inputs"].items():
            if value == [node_id, 0]:
                node["inputs"][key] = source
    return prompt


def ids_of(prompt: dict, *class_types: str) -> list[str]:
    return [node_id for node_id, node in prompt.items() if node["class_type"] in class_types]


def frames_of(path: Path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as video:
        return video.n_frames, video.size


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_the_example_workflows_run_in_comfyuis_executor(workflow, comfy_folders, caplog):
    prompt = small(workflow)
    with caplog.at_level(logging.WARNING):
        ran, outputs = Executor().run(prompt)
    alg = ids_of(prompt, "ALGGuidance")
    assert alg and set(alg) <= ran
    unloaded = [record.getMessage() for record in caplog.records if "missing" in record.getMessage()]
    unloaded += [record.getMessage() for record in caplog.records if "not loaded" in record.getMessage()]
    assert not unloaded, unloaded  # every weight reached its model, and every LoRA weight its layer

    (save,) = ids_of(prompt, "SaveAnimatedWEBP")
    (image_to_video,) = ids_of(prompt, "WanImageToVideo", "LTXVImgToVideo")
    length = prompt[image_to_video]["inputs"]["length"]
    (video,) = outputs[save]["images"]
    assert frames_of(comfy_folders / "output" / video["subfolder"] / video["filename"]) == (length, (64, 64))

    for preview in ids_of(prompt, "ALGSchedulePreview"):  # LTX-Video: the schedule of the sampler's sigmas, shown
        (shown,) = (node_id for node_id, node in prompt.items() if node["inputs"].get("images") == [preview, 0])
        (chart,) = outputs[shown]["images"]
        with Image.open(comfy_folders / "temp" / chart["subfolder"] / chart["filename"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape == (320, 640, 3)
        assert (pixels == BAR).all(axis=-1).any()  # the preset filters the first of the 3 steps


def test_alg_changes_the_wan_workflows_output_and_at_strength_0_it_is_bypassing_alg(comfy_folders):
    """One executor runs the workflow with the ALG node bypassed, with it, bypassed again and with it at strength 0,
    as a user queues them: ComfyUI runs again only what changed and keeps the loaded models, so ALG must leave no
    trace on the model it patched."""
    prompt = small("wan2.1_i2v_alg")
    (alg,) = ids_of(prompt, "ALGGuidance")
    (loader,) = ids_of(prompt, "UNETLoader")
    (sampler,) = ids_of(prompt, "KSampler")
    (decode,) = ids_of(prompt, "VAEDecode")
    executor = Executor()

    def run(workflow: dict, loads: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ran, _ = executor.run(workflow)
        assert sampler in ran and (loader in ran) == loads
        return executor.output(sampler)[0][0]["samples"], executor.output(decode)[0][0]

    plain_latent, plain_frames = run(bypassed(prompt, alg), loads=True)
    alg_latent, alg_frames = run(prompt)
    again_latent, again_frames = run(bypassed(prompt, alg))
    off_latent, off_frames = run(small("wan2.1_i2v_alg", **{alg: OFF}))

    assert (alg_latent - plain_latent).abs().max() > 1e-2
    assert (alg_frames - plain_frames).abs().max() > 1e-3
    assert torch.equal(again_latent, plain_latent) and torch.equal(again_frames, plain_frames)
    assert torch.equal(off_latent, plain_latent) and torch.equal(off_frames, plain_frames)
