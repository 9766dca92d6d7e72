"""Take the screenshot of docs/comfyui.md: the Wan 2.1 example workflow in ComfyUI's own web interface.

`python docs/images/render_comfyui_screenshot.py COMFYUI_DIR` starts ComfyUI's server from the ComfyUI tree
`COMFYUI_DIR` on the CPU, with this repository's node package as its only custom node, opens the frontend
(the `comfyui-frontend-package` of ComfyUI's `requirements.txt`) in headless Chromium, loads
`wan2.1_i2v_alg.json` through the frontend's `app.loadApiJson` (what dropping the file on the canvas does),
lays its nodes out by hand and writes `comfyui-wan21-workflow.png` next to this script.

Run from the repository root with ComfyUI's requirements, its frontend package, `playwright` (pip; only its
driver is used) and a Chromium (`apt-get install chromium`). Nothing is downloaded and no model is loaded: the
model files the workflow names are empty placeholders in a temporary base directory. Neither CI nor the tests
need this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

IMAGES = Path(__file__).resolve().parent
ROOT = IMAGES.parent.parent
PLUGIN = ROOT / "plugins" / "comfyui-alg-guidance"
WORKFLOW = PLUGIN / "example_workflows" / "wan2.1_i2v_alg.json"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# the model folder of each loader in the workflow, for the placeholder files its file lists show
MODEL_FOLDERS = {
    "UNETLoader": ("unet_name", "diffusion_models"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "VAELoader": ("vae_name", "vae"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
}
# where each node of wan2.1_i2v_alg.json goes on the canvas, `[x, y]` of its body (the title sits above):
# the MODEL path (loader, ALG Guidance, KSampler) along the top, the conditioning below
LAYOUT = {
    "1": [0, 0], "10": [330, 0], "11": [1090, 0], "12": [1090, 310], "13": [1090, 410],
    "2": [0, 150], "3": [0, 330], "4": [0, 450], "5": [0, 570],
    "7": [330, 270], "8": [330, 470], "6": [330, 670], "9": [770, 270],
}  # fmt: skip
SIZES = {"10": [380, 200], "7": [380, 150], "8": [380, 150], "12": [200, 46]}
VIEWPORT = {"width": 1600, "height": 1000}
# the part of the page the graph is fitted into: clear of the side bar, the top bar and the Run button
FIT = {"left": 80, "top": 120, "right": 1570, "bottom": 985}
ARRANGE = """([layout, sizes, fit]) => {
    const app = window.app, graph = app.graph;
    for (const node of graph._nodes) {
        if (layout[node.id]) node.pos = layout[node.id];
        if (sizes[node.id]) node.size = sizes[node.id];
    }
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    const left = Math.min(...graph._nodes.map(n => n.pos[0]));
    const top = Math.min(...graph._nodes.map(n => n.pos[1] - title));
    const right = Math.max(...graph._nodes.map(n => n.pos[0] + n.size[0]));
    const bottom = Math.max(...graph._nodes.map(n => n.pos[1] + n.size[1]));
    const rect = app.canvas.canvas.getBoundingClientRect();
    const scale = Math.min((fit.right - fit.left) / (right - left), (fit.bottom - fit.top) / (bottom - top), 1);
    const x = (fit.left + fit.right) / 2 - rect.left, y = (fit.top + fit.bottom) / 2 - rect.top;
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [x / scale - (left + right) / 2, y / scale - (top + bottom) / 2];
    app.canvas.setDirty(true, true);
    return scale;
}"""


def base_directory(base: Path, workflow: dict) -> None:
    """A ComfyUI base directory: the node package, empty model files, the input image and quiet UI settings."""
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / PLUGIN.name).symlink_to(PLUGIN, target_is_directory=True)
    for node in workflow.values():
        if node["class_type"] in MODEL_FOLDERS:
            name, folder = MODEL_FOLDERS[node["class_type"]]
            (base / "models" / folder).mkdir(parents=True, exist_ok=True)
            (base / "models" / folder / node["inputs"][name]).touch()
        if node["class_type"] == "LoadImage":
            (base / "input").mkdir(exist_ok=True)
            shutil.copy(ROOT / "alg_guidance" / "assets" / "sample.png", base / "input" / node["inputs"]["image"])
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False}
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(settings))


def start_server(comfyui: Path, base: Path, port: int, log: Path) -> subprocess.Popen:
    """ComfyUI's server on the CPU, once it answers for the ALGGuidance node."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--database-url", "sqlite:///:memory:"]  # fmt: skip
    server = subprocess.Popen(command, cwd=comfyui, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ComfyUI's server exited with {server.returncode}; its log is {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info/ALGGuidance") as answer:
                if "ALGGuidance" in json.load(answer):
                    return server
        except OSError:
            pass
        time.sleep(1)
    server.terminate()
    raise RuntimeError(f"ComfyUI's server did not serve the ALGGuidance node within 300 s; its log is {log}")


def screenshot(port: int, chromium: str, workflow: dict, profile: Path, out: Path) -> float:
    """Load `workflow` in the frontend, lay it out, save the page as `out`; return the canvas zoom."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT
        )
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("window.app && window.app.graph && window.app.vueAppReady", timeout=120_000)
        page.evaluate("([workflow, name]) => window.app.loadApiJson(workflow, name)", [workflow, WORKFLOW.name])
        page.wait_for_timeout(1500)  # the Load Image preview
        scale = page.evaluate(ARRANGE, [LAYOUT, SIZES, FIT])
        page.mouse.move(VIEWPORT["width"] - 5, VIEWPORT["height"] // 2)  # no hover highlight on a node
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out))
        browser.close()
    return scale


def main() -> None:
    """Start the server, take the screenshot, save it as an optimized PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comfyui", type=Path, help="a ComfyUI tree (the folder of its main.py)")
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=IMAGES / "comfyui-wan21-workflow.png")
    arguments = parser.parse_args()
    workflow = json.loads(WORKFLOW.read_text())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        base_directory(work / "base", workflow)
        server = start_server(arguments.comfyui.resolve(), work / "base", arguments.port, work / "server.log")
        try:
            scale = screenshot(arguments.port, arguments.chromium, workflow, work / "profile", work / "page.png")
        finally:
            server.terminate()
            server.wait(timeout=60)
        with Image.open(work / "page.png") as page:
            page.convert("RGB").save(arguments.out, optimize=True)
    size = arguments.out.stat().st_size // 1024
    print(f"{arguments.out}: {size} KiB, canvas zoom {scale:.2f}, frontend {version('comfyui-frontend-package')}")


if __name__ == "__main__":
    main()
