"""The docs cannot drift from the code: every hook, public name, preset and builtin is documented, and every
example the docs include runs."""

from __future__ import annotations

import importlib
import re
import runpy
from pathlib import Path

import pytest

import alg_guidance as alg
from alg_guidance import hookspecs
from alg_guidance.config import ALGConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def reference_members() -> set[str]:
    """Every `module.member` the API reference renders."""
    rendered = set()
    for page in (DOCS / "reference").glob("*.md"):
        for module, options in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", page.read_text(), flags=re.M):
            rendered.add(module)
            listed = re.search(r"members: (.*)", options)
            if listed is None:  # the whole module: every public name defined in it
                namespace = vars(importlib.import_module(module))
                names = [name for name, value in namespace.items() if getattr(value, "__module__", None) == module]
            elif listed.group(1).startswith("["):
                names = [name.strip() for name in listed.group(1).strip("[]").split(",")]
            else:
                names = []
            rendered.update(f"{module}.{name}" for name in names)
    return rendered


def resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def test_every_hook_is_in_the_reference_and_the_plugin_guide():
    hooks = [name for name in dir(hookspecs) if name.startswith("alg_register_")]
    assert hooks == ["alg_register_adapters", "alg_register_filters", "alg_register_schedules"]
    guide = read("docs/plugins/writing.md")
    for hook in hooks:
        assert f"alg_guidance.hookspecs.{hook}" in reference_members()
        assert f"`{hook}(register)`" in guide


def test_every_public_name_of_the_package_is_documented():
    members = reference_members()
    index = read("docs/reference/index.md")
    for name in alg.__all__:
        if name == "__version__":
            continue
        value = getattr(alg, name)
        documented = [m for m in members if m.rpartition(".")[2] == name and resolve(m) is value]
        assert documented, f"{name} is missing from the API reference"
        assert f"`{name}`" in index, f"{name} is missing from docs/reference/index.md"


def test_every_module_has_a_reference_page():
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "alg_guidance").rglob("*.py")
        if (path.name == "__init__.py" or not path.name.startswith("_")) and "cli" not in path.parts
    }
    # packages whose names all live in their modules
    modules -= {"alg_guidance.adapters", "alg_guidance.integrations"}
    assert modules <= reference_members()


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


@pytest.mark.parametrize("example", sorted((DOCS / "examples").glob("*.py")), ids=lambda path: path.name)
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
