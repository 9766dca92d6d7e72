from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from alg_guidance.registry import ENTRY_POINT_GROUP


class Distributions:
    """Installs throwaway distributions (dist-info + module) on sys.path, found through real entry points."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        monkeypatch.syspath_prepend(str(root))

    def install(self, distribution: str, source: str, *, entry_point: str | None = None, version: str = "1.0") -> str:
        module = f"plugin_{uuid.uuid4().hex[:10]}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_point or distribution} = {module}\n")
        self.monkeypatch.delitem(sys.modules, module, raising=False)
        return module


@pytest.fixture
def distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Distributions:
    site = tmp_path / "site"
    site.mkdir()
    return Distributions(site, monkeypatch)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests run tiny models, for which thread hand-offs cost more than they save (and CI has 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
