"""Loading k-diffusion's sampler module, even where the `k_diffusion` package itself cannot be imported.

`import k_diffusion` imports every module of the package, and with them torchvision, scikit-image, CLIP (which
needs `pkg_resources`, gone from setuptools 81), wandb and more: it fails on a machine without torchvision
(CPU-only installs), without scikit-image, or with a recent setuptools. The samplers live in one module,
`k_diffusion/sampling.py`, that needs only torch, scipy, torchsde, torchdiffeq, tqdm and one helper from
`k_diffusion.utils`, `append_dims`.

[`load_sampling`][alg_guidance.integrations.k_diffusion.loader.load_sampling] imports `k_diffusion.sampling`
the ordinary way and, when the package import fails, executes the installed `sampling.py` file on its own, as
the module `alg_guidance.integrations.k_diffusion._standalone.sampling`, next to a stand-in `utils` module that
holds [`append_dims`][alg_guidance.integrations.k_diffusion.loader.append_dims] and nothing else. The samplers
are then k-diffusion's own code, unchanged.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path

import torch

from ...errors import ALGError

logger = logging.getLogger(__name__)

STANDALONE = f"{__name__.rpartition('.')[0]}._standalone"
"""The package name under which the sampler module is loaded on its own."""

INSTALL_HINT = 'pip install "alg-guidance[k-diffusion]" && pip install --no-deps "k-diffusion==0.1.1.post1"'
"""How to install k-diffusion without the dependencies that break its package import."""


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """`x` with singleton dimensions appended until it has `target_dims` dimensions.

    The one helper `k_diffusion/sampling.py` takes from `k_diffusion.utils` (to broadcast a per-sample sigma
    over a batch of images); the stand-in `utils` module holds this function instead.

    Examples:
        >>> append_dims(torch.ones(3), 4).shape
        torch.Size([3, 1, 1, 1])
    """
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"cannot append dimensions to a {x.ndim}-D tensor to reach {target_dims}")
    return x.reshape(*x.shape, *([1] * missing))


def _missing_utility(name: str):
    raise AttributeError(
        f"k-diffusion's sampling module asked for utils.{name}, which the stand-in for k_diffusion.utils lacks "
        f"(it provides append_dims only); install k-diffusion with its dependencies to use it"
    )


@functools.cache
def load_sampling() -> types.ModuleType:
    """k-diffusion's `sampling` module: imported normally, or loaded on its own when the package import fails.

    Loaded once per process.

    Raises:
        ALGError: k-diffusion is not installed, or a dependency of its sampler module is missing; the message
            says what to install.

    Examples:
        ```python
        sampling = alg.k_diffusion.load_sampling()
        x = sampling.sample_dpmpp_2m(guided, noise * sigmas[0], sigmas)
        ```
    """
    return import_sampling()


def import_sampling() -> types.ModuleType:
    """What [`load_sampling`][alg_guidance.integrations.k_diffusion.loader.load_sampling] returns, without its cache."""
    try:
        return importlib.import_module("k_diffusion.sampling")
    except Exception as error:  # the package's __init__ imports a dozen unrelated modules; any of them may fail
        if isinstance(error, ModuleNotFoundError) and error.name == "k_diffusion":
            raise ALGError(f"k-diffusion is not installed; install it with: {INSTALL_HINT}") from error
        logger.info("importing k_diffusion failed (%r); loading its sampling module on its own", error)
        return _load_on_its_own(_sampling_file())


def _sampling_file() -> Path:
    spec = importlib.util.find_spec("k_diffusion")  # finds the package without executing it
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "sampling.py"
        if path.is_file():
            return path
    raise ALGError(f"found no k_diffusion/sampling.py; install k-diffusion with: {INSTALL_HINT}")


def _load_on_its_own(path: Path) -> types.ModuleType:
    """Execute `path` as `<STANDALONE>.sampling`, its `from . import utils` served by the stand-in."""
    package = types.ModuleType(STANDALONE, "Stand-in parent package of k-diffusion's sampling module.")
    package.__path__ = []  # a package, so that the module's relative import resolves
    utils = types.ModuleType(f"{STANDALONE}.utils", "Stand-in for k_diffusion.utils: append_dims only.")
    utils.append_dims = append_dims
    utils.__getattr__ = _missing_utility
    package.utils = utils
    name = f"{STANDALONE}.sampling"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    added = {STANDALONE: package, f"{STANDALONE}.utils": utils, name: module}
    sys.modules.update(added)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        for key in added:
            sys.modules.pop(key, None)
        raise ALGError(
            f"k-diffusion's sampling module needs {error.name or error}, which is not installed; "
            f'install the sampler dependencies with: pip install "alg-guidance[k-diffusion]"'
        ) from error
    package.sampling = module
    return module
