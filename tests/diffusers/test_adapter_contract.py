"""Every builtin adapter passes the contract `alg_guidance.testing` offers third-party adapter authors."""

from __future__ import annotations

import pytest

from alg_guidance.testing import ADAPTER_CHECKS
from tests.support.families import all_families

FAMILIES = all_families()


@pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", FAMILIES)
def test_builtin_adapters_pass_the_adapter_contract(name, check):
    family = FAMILIES[name]
    check(family.adapter, family.make, family.call)
