from __future__ import annotations

import pytest

from alg_guidance.integrations.k_diffusion import load_sampling


@pytest.fixture(scope="session")
def sampling():
    """k-diffusion's real sampler module, through the library's loader (the package import fails here)."""
    return load_sampling()
