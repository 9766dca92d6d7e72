"""The package root exports what it can import: with or without the diffusers extra, `import *` works, `dir()`
lists the lazily imported names, and a name that needs diffusers says what to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import alg_guidance as alg

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter where `import diffusers` fails as it does where the extra is not installed.
WITHOUT_DIFFUSERS = """
import json, sys
sys.modules["diffusers"] = None
import alg_guidance as alg

found = {}
namespace = {}
exec("from alg_guidance import *", namespace)
found["root_star"] = sorted(name for name in namespace if not name.startswith("__"))
namespace = {}
exec("from alg_guidance.integrations.k_diffusion import *", namespace)
found["k_diffusion_star"] = sorted(name for name in namespace if not name.startswith("__"))
found["root_dir"] = dir(alg)
found["k_diffusion_dir"] = dir(alg.k_diffusion)
try:
    alg.enable
except ModuleNotFoundError as error:
    found["enable"] = str(error)
print(json.dumps(found))
"""


def without_diffusers() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DIFFUSERS], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_diffusers_import_star_and_dir_hold_the_core_and_using_enable_names_the_extra():
    found = without_diffusers()
    assert "ALGConfig" in found["root_star"] and "k_diffusion" in found["root_star"]
    assert not {"enable", "disable", "ALGHandle"} & {*found["root_star"], *found["root_dir"]}
    assert "k_diffusion" in found["root_dir"]
    assert set(alg.k_diffusion.__all__) <= set(found["k_diffusion_star"]) <= set(found["k_diffusion_dir"])
    assert found["enable"] == (
        'alg_guidance.enable needs diffusers, which is not installed: pip install "alg-guidance[diffusers]"'
    )


def test_with_diffusers_every_exported_name_is_listed_and_importable():
    assert {"enable", "disable", "ALGHandle", "k_diffusion"} <= set(alg.__all__) <= set(dir(alg))
    assert {"from_pipeline", "PipelineSetup"} <= set(alg.k_diffusion.__all__) <= set(dir(alg.k_diffusion))
    namespace = {}
    exec("from alg_guidance import *", namespace)
    assert namespace["enable"] is alg.enable and namespace["k_diffusion"] is alg.k_diffusion
