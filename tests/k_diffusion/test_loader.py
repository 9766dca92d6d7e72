"""k-diffusion's real sampler module, imported normally or loaded on its own; never by `import alg_guidance`."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import loader

PREFIXES = ("k_diffusion", loader.STANDALONE)


@pytest.fixture
def modules():
    """`sys.modules` without the k-diffusion and stand-in modules, for the test to change; restored afterwards."""
    saved = dict(sys.modules)
    for name in [name for name in saved if name.startswith(PREFIXES)]:
        del sys.modules[name]
    yield sys.modules
    for name in [name for name in sys.modules if name.startswith(PREFIXES)]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_where_the_package_import_fails_the_installed_sampling_file_runs_on_its_own(modules):
    for dependency in ("torchvision", "skimage", "clip"):  # what breaks `import k_diffusion` on CPU-only machines
        modules[dependency] = None
    with pytest.raises(ImportError):
        importlib.import_module("k_diffusion")
    sampling = loader.import_sampling()
    installed = Path(importlib.util.find_spec("k_diffusion").submodule_search_locations[0]) / "sampling.py"
    assert Path(sampling.__file__) == installed
    assert sampling.__name__ == f"{loader.STANDALONE}.sampling"
    assert sampling.utils.append_dims is loader.append_dims
    assert inspect.unwrap(sampling.sample_euler).__code__.co_filename == str(installed)
    sigmas = sampling.get_sigmas_karras(4, 0.1, 10.0)
    x = sampling.sample_euler(lambda x, sigma: x * 0, torch.ones(2, 3) * 10.0, sigmas, disable=True)
    assert torch.equal(x, torch.zeros(2, 3))


def test_the_loader_returns_one_module_for_the_whole_process(sampling):
    from alg_guidance.integrations.k_diffusion import load_sampling

    assert load_sampling() is sampling
    assert sampling.__name__ in ("k_diffusion.sampling", f"{loader.STANDALONE}.sampling")


def test_the_stand_in_utilities_name_what_they_lack(modules):
    modules["skimage"] = None
    sampling = loader.import_sampling()
    with pytest.raises(AttributeError, match="provides append_dims only"):
        sampling.utils.n_params  # noqa: B018


def test_append_dims_matches_broadcasting_against_a_batch():
    sigma = torch.tensor([1.0, 2.0])
    assert loader.append_dims(sigma, 4).shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="cannot append"):
        loader.append_dims(torch.ones(2, 2), 1)


def test_a_package_that_imports_is_used_as_it_is(modules, tmp_path, monkeypatch):
    package = tmp_path / "k_diffusion"
    package.mkdir()
    (package / "__init__.py").write_text("from . import sampling\n")
    (package / "sampling.py").write_text("ORIGIN = 'the package'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = loader.import_sampling()
    assert module.__name__ == "k_diffusion.sampling" and module.ORIGIN == "the package"


def test_without_k_diffusion_the_error_says_how_to_install_it(modules):
    modules["k_diffusion"] = None  # what the import system reads as 'not installed'
    with pytest.raises(ALGError, match=r'pip install --no-deps "k-diffusion==0.1.1.post1"'):
        loader.import_sampling()


def test_a_missing_sampler_dependency_is_named_and_nothing_is_left_behind(modules):
    modules["torchsde"] = None
    with pytest.raises(ALGError, match=r"needs torchsde.*alg-guidance\[k-diffusion\]"):
        loader.import_sampling()
    assert not [name for name in sys.modules if name.startswith(loader.STANDALONE)]


def test_importing_alg_guidance_imports_neither_k_diffusion_nor_diffusers():
    script = textwrap.dedent(
        """
        import sys
        import alg_guidance as alg
        import alg_guidance.integrations.k_diffusion
        assert alg.k_diffusion is alg_guidance.integrations.k_diffusion
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("k_diffusion", "diffusers"))
        assert not loaded, loaded
        assert not [name for name in sys.modules if "_standalone" in name]
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2])
