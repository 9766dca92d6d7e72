"""The docs cannot drift from the code: the built site documents every hook and public name, renders its math
without the network, and every example the docs include runs."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import runpy
import subprocess
import sys
import zlib
from pathlib import Path

import griffe
import pytest

import alg_guidance as alg
from alg_guidance import hookspecs
from alg_guidance.config import ALGConfig
from alg_guidance.video import read_video

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
QUICK_START = DOCS / "examples" / "quickstart.py"
# modules documented under Internals only (the engine's SigmaProgress is public, through alg.k_diffusion)
INTERNAL_MODULES = tuple(
    f"alg_guidance.{module}."
    for module in (
        "engine.plan",
        "engine.run",
        "engine.conditions",
        "engine.batching",
        "integrations.diffusers.scope",
        "integrations.diffusers.run",
        "integrations.diffusers.hook",
        "integrations.diffusers.clock",
        "integrations.diffusers.calls",
        "integrations.diffusers.offload",
        "integrations.k_diffusion.conditioning",
    )
)


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as CI builds it: strict, so a warning (a broken link or anchor) fails."""
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def documented(site) -> set[str]:
    """The dotted path of every object the site renders (mkdocstrings' inventory, without aliases)."""
    compressed = (site / "objects.inv").read_bytes().split(b"\n", 4)[4]  # after four lines of header
    paths = set()
    for line in zlib.decompress(compressed).decode().splitlines():
        name, role, priority, _ = line.split(" ", 3)
        if role.startswith("py:") and priority == "1":
            paths.add(name)
    return paths


def pages(site: Path) -> dict[str, str]:
    return {str(path.relative_to(site)): path.read_text(encoding="utf-8") for path in site.rglob("*.html")}


def resolve(dotted: str) -> object:
    """The object at `dotted`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            value = getattr(value, part, None)
        return value
    return None


def library_modules() -> list[str]:
    """Every module of the package but the command line's (documented on its own page) and private ones."""
    names = ["alg_guidance"]
    for module in pkgutil.walk_packages(alg.__path__, "alg_guidance."):
        parts = module.name.split(".")
        if parts[1] != "cli" and not any(part.startswith("_") for part in parts):
            names.append(module.name)
    return names


def test_the_site_builds_strictly_with_math_rendered_and_nothing_loaded_from_another_host(site):
    external = re.compile(r'<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"')
    tex = re.compile(r"\\[(\[]|\\[A-Za-z]{2,}|\$\$")
    code = re.compile(r"<(pre|code|script)\b.*?</\1>", flags=re.S)
    for name, html in pages(site).items():
        assert not external.findall(html), f"{name} loads {external.findall(html)} from another host"
        left = tex.findall(code.sub("", html))
        assert not left, f"{name} shows raw TeX {left}"
    for stylesheet in site.rglob("*.css"):
        assert not re.search(r"(?:url\(|@import)\s*['\"]?(?:https?:)?//", stylesheet.read_text(encoding="utf-8"))
    assert "<math" in (site / "how-alg-works" / "index.html").read_text(encoding="utf-8")


def test_long_code_lines_and_wide_tables_wrap_inside_the_column(site):
    assert 'href="../stylesheets/extra.css"' in (site / "models" / "index.html").read_text(encoding="utf-8")
    css = re.sub(r"/\*.*?\*/", "", (site / "stylesheets" / "extra.css").read_text(encoding="utf-8"), flags=re.S)
    rules = {}
    for selectors, declarations in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        for selector in selectors.split(","):
            rules[selector.strip()] = declarations
    assert "white-space: pre-wrap" in rules[".md-typeset pre > code"]
    assert "overflow-wrap: anywhere" in rules[".md-typeset table:not([class]) code"]


def test_every_public_name_is_documented_on_the_site(site, documented):
    package = griffe.load("alg_guidance", search_paths=[ROOT], resolve_aliases=True, resolve_external=False)
    for module_name in library_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            value = getattr(module, name)
            found = [path for path in documented if path.rpartition(".")[2] == name and resolve(path) is value]
            assert found, f"{module_name}.{name} is not documented on the site"
            docstring = package[found[0].removeprefix("alg_guidance.")].docstring
            assert docstring and docstring.value.strip(), f"{found[0]} has no docstring"


def test_every_name_of_the_package_root_is_in_the_reference_index():
    index = read("docs/reference/index.md")
    for name in alg.__all__:
        if name != "__version__":
            assert f"`{name}`" in index, f"{name} is missing from docs/reference/index.md"


def test_every_module_is_rendered(documented):
    # packages whose names all live in their modules
    assert set(library_modules()) - {"alg_guidance.adapters", "alg_guidance.integrations"} <= documented


def test_every_documented_call_method_is_rendered(documented):
    for path in documented:
        cls = resolve(path)
        call = vars(cls).get("__call__") if isinstance(cls, type) else None
        if call is not None and call.__doc__:
            assert f"{path}.__call__" in documented, f"{path}.__call__ is not rendered"


def test_the_public_reference_renders_no_internals(site):
    for name, html in pages(site).items():
        if name.startswith("reference/"):
            rendered = re.findall(r'id="(alg_guidance\.[\w.]+)"', html)
            internal = [path for path in rendered if f"{path}.".startswith(INTERNAL_MODULES)]
            assert not internal, f"{name} renders internals {internal}: they belong under docs/internals"


def test_every_hook_is_in_the_reference_and_the_plugin_guide(documented):
    hooks = [name for name in dir(hookspecs) if name.startswith("alg_register_")]
    assert hooks == ["alg_register_adapters", "alg_register_filters", "alg_register_schedules"]
    guide = read("docs/plugins/writing.md")
    for hook in hooks:
        assert f"alg_guidance.hookspecs.{hook}" in documented
        assert f"`{hook}(register)`" in guide


def test_the_plugin_guide_says_which_alg_guidance_versions_to_pin():
    major, minor = map(int, re.search(r'^version = "(\d+)\.(\d+)', read("pyproject.toml"), flags=re.M).groups())
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    assert f'"alg-guidance>={major}.{minor},<{upper}"' in read("docs/plugins/writing.md")


def test_the_papers_numbers_are_in_one_table_that_the_readme_and_home_page_link(site):
    table = read("docs/how-alg-works.md").partition("## The paper's numbers")[2].partition("\n## ")[0]
    pairs = re.findall(r"(\d+\.\d) → (\d+\.\d)", table)
    assert ("28.9", "41.5") in pairs and ("28.9", "39.4") in pairs
    others = [ROOT / "README.md", *(page for page in DOCS.rglob("*.md") if page.name != "how-alg-works.md")]
    for page in others:
        for before, after in pairs:
            assert not re.search(rf"{before}\D{{1,6}}{after}", page.read_text()), f"{page.name} repeats {before}"
    assert 'id="the-papers-numbers"' in (site / "how-alg-works" / "index.html").read_text(encoding="utf-8")
    assert "how-alg-works.md#the-papers-numbers" in read("README.md")
    assert "how-alg-works.md#the-papers-numbers" in read("docs/index.md")


def test_every_preset_is_in_the_presets_table_with_its_status():
    table = read("docs/configuration.md")
    for preset in alg.list_presets():
        row = re.search(rf"^\| `{re.escape(preset.name)}` \| (yes|no) \|", table, flags=re.M)
        assert row, f"preset {preset.name} is missing from docs/configuration.md"
        assert (row.group(1) == "yes") == preset.tuned


def test_every_builtin_filter_and_schedule_is_listed():
    page = read("docs/plugins/builtin.md")
    builtins = alg.Registry(entry_points=False)
    for kind in [*builtins.filters(), *builtins.schedules()]:
        assert f"`{kind}`" in page


def test_the_quick_start_runs_on_a_tiny_wan_model(tmp_path, monkeypatch):
    from tests.support import tiny_model_dir, tiny_wan

    model = tiny_model_dir.save_wan21(tmp_path / "tiny-wan2.1")
    tiny_wan.image().save(tmp_path / "input.png")
    monkeypatch.chdir(tmp_path)
    quick_start = runpy.run_path(str(QUICK_START))  # not as __main__, which samples the real model
    quick_start["generate"](model=str(model), height=64, width=64, num_frames=9, device="cpu")
    assert read_video(tmp_path / "alg.mp4").frames.shape == (9, 64, 64, 3)
    assert '--8<-- "docs/examples/quickstart.py"' in read("docs/index.md")


@pytest.mark.parametrize(
    "example", sorted(set((DOCS / "examples").glob("*.py")) - {QUICK_START}), ids=lambda path: path.name
)
def test_python_examples_in_the_docs_run(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(example), run_name="__main__")


@pytest.mark.parametrize("example", sorted((DOCS / "examples").glob("*.yaml")), ids=lambda path: path.name)
def test_config_examples_in_the_docs_load(example):
    assert isinstance(ALGConfig.from_file(example), ALGConfig)


def test_every_included_snippet_exists():
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        assert "--8 <" not in text, f"{page.name}: a snippet line was mangled (by a formatter?)"
        for included in re.findall(r'--8<-- "([^"]+)"', text):
            assert (ROOT / included).is_file(), f"{page.name} includes missing {included}"


def test_readme_opens_with_the_main_job_and_the_test_command_that_ci_runs():
    blocks = re.findall(r"```bash\n(.*?)\n```", read("README.md"), flags=re.S)
    main_job, tests = blocks[0], blocks[1]
    assert "alg-guidance preview" in main_job
    assert tests.endswith("python -m pytest")
    ci_lines = read(".ci/run").splitlines()
    assert tests in ci_lines, ".ci/run must run exactly the README's test command"
