"""The support matrix in docs/models/index.md matches the registry: a row per builtin adapter, and no other row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alg_guidance.adapters import BUILTIN_ADAPTERS
from alg_guidance.registry import default_registry

MATRIX = Path(__file__).resolve().parents[1] / "docs" / "models" / "index.md"


def matrix_rows() -> dict[str, str]:
    """The support matrix's rows (the page's first table): adapter name -> the pipeline cell."""
    rows: dict[str, str] = {}
    table_started = False
    for line in MATRIX.read_text(encoding="utf-8").splitlines():
        if line.startswith("| adapter |"):
            table_started = True
            continue
        if not table_started:
            continue
        if not line.startswith("|"):
            break
        if set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.fullmatch(r"`([^`]+)`", cells[0])
        assert name, f"the first cell of a support-matrix row names one adapter in backticks: {line!r}"
        assert name.group(1) not in rows, f"two rows for adapter {name.group(1)!r}"
        rows[name.group(1)] = cells[1]
    assert rows, f"no support matrix (a table whose header starts '| adapter |') in {MATRIX}"
    return rows


def builtin_adapters() -> dict[str, type]:
    """The builtin adapters as the registry holds them at run time (plugins' adapters left out)."""
    registered = default_registry().adapters()
    return {name: cls for name, cls in registered.items() if cls in BUILTIN_ADAPTERS}


@pytest.mark.parametrize("name", sorted(builtin_adapters()))
def test_every_builtin_adapter_has_a_row_naming_its_pipelines(name):
    rows = matrix_rows()
    assert name in rows, f"docs/models/index.md has no support-matrix row for the builtin adapter {name!r}"
    for pipeline in builtin_adapters()[name].pipelines:
        assert f"`{pipeline}`" in rows[name], f"the {name!r} row does not name its pipeline {pipeline}"


def test_every_row_names_a_registered_adapter():
    registered = default_registry().adapters()
    unknown = sorted(set(matrix_rows()) - set(registered))
    assert not unknown, f"support-matrix rows for adapters that are not registered: {unknown}"


def test_every_builtin_adapter_is_registered():
    assert set(builtin_adapters().values()) == set(BUILTIN_ADAPTERS)
