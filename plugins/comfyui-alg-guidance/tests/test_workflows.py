"""The node package loads the way ComfyUI loads custom nodes, and its example workflows pass ComfyUI's validation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip(
    "torchaudio",
    reason="ComfyUI's node modules import torchaudio (comfy.sd loads the LTX-2 audio VAE), which has no build for "
    "the torch 2.14.1 + torchvision 0.29.1 pair CI uses",
)

import folder_paths
import nodes
from execution import validate_prompt
from PIL import Image

PACKAGE = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((PACKAGE / "example_workflows").glob("*.json"))
MODEL_INPUTS = {"unet_name": "diffusion_models", "clip_name": None, "vae_name": "vae", "lora_name": "loras",
                "ckpt_name": "checkpoints"}  # fmt: skip
CLIP_FOLDERS = {"CLIPLoader": "text_encoders", "CLIPVisionLoader": "clip_vision"}


@pytest.fixture(scope="module")
def comfy_nodes():
    """ComfyUI's builtin and extra nodes, and this package loaded from its folder as a custom node."""
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    assert asyncio.run(nodes.load_custom_node(str(PACKAGE)))
    return nodes.NODE_CLASS_MAPPINGS


def test_the_package_loads_as_a_custom_node(comfy_nodes):
    assert {"ALGGuidance", "ALGSchedulePreview"} <= set(comfy_nodes)
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["ALGGuidance"] == "ALG Guidance (low-pass image)"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.stem)
def test_example_workflows_pass_comfyuis_validation(path, comfy_nodes, tmp_path):
    prompt = json.loads(path.read_text())
    assert any(node["class_type"] == "ALGGuidance" for node in prompt.values())
    for node in prompt.values():  # the files the loaders name, as empty placeholders in temporary model folders
        for name, value in node["inputs"].items():
            if name in MODEL_INPUTS:
                folder = MODEL_INPUTS[name] or CLIP_FOLDERS[node["class_type"]]
                (tmp_path / folder).mkdir(exist_ok=True)
                (tmp_path / folder / value).touch()
                folder_paths.add_model_folder_path(folder, str(tmp_path / folder))
    folder_paths.set_input_directory(str(tmp_path))
    Image.new("RGB", (64, 64)).save(tmp_path / "example.png")
    valid, error, outputs, node_errors = asyncio.run(validate_prompt(path.stem, prompt, None))
    assert valid, (error, node_errors)
    assert outputs
