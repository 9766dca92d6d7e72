"""The distributions a release publishes: what the wheel and the sdist hold, their license files, the README as a
package index renders it, and the version against CHANGELOG.md.

The distributions are built here, offline (`python -m build --no-isolation`; hatchling comes with the `release`
extra). The release workflow sets `ALG_DIST_DIR` so that the very files it publishes are checked instead, and
`ALG_RELEASE_TAG` to the pushed tag.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: build and hatchling depend on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
REPOSITORY = "https://github.com/alg-guidance/alg-guidance"
RAW_MAIN = "https://raw.githubusercontent.com/alg-guidance/alg-guidance/main/"
PLUGINS = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "pyproject.toml").is_file())
COMFYUI_PLUGIN = "plugins/comfyui-alg-guidance"
needs_comfyui_plugin = pytest.mark.skipif(
    not (ROOT / COMFYUI_PLUGIN).is_dir(), reason="the ComfyUI node package has its own sdist, not this one"
)
# The first lines of each license text the distributions declare.
LICENSE_TEXTS = {
    "Apache-2.0": ("Apache License", "Version 2.0, January 2004"),
    "GPL-3.0-or-later": ("GNU GENERAL PUBLIC LICENSE", "Version 3, 29 June 2007"),
}


@dataclass(frozen=True)
class Dists:
    """One project's sdist and wheel, with their file names (the sdist's without its `name-version/` folder)."""

    project: Path
    sdist: Path
    wheel: Path

    @property
    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as archive:
            return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    @property
    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())

    def wheel_file(self, suffix: str) -> str:
        with zipfile.ZipFile(self.wheel) as archive:
            (name,) = [name for name in archive.namelist() if name.endswith(suffix)]
            return archive.read(name).decode()

    def sdist_file(self, name: str) -> str:
        with tarfile.open(self.sdist) as archive:
            (member,) = [member for member in archive.getmembers() if member.name.split("/", 1)[-1] == name]
            return archive.extractfile(member).read().decode()

    @property
    def metadata(self) -> email.message.Message:
        return email.parser.Parser(policy=email.policy.compat32).parsestr(self.wheel_file(".dist-info/METADATA"))


def build(project: Path, outdir: Path) -> Dists:
    """The sdist, then the wheel built from that sdist (so the sdist is known to be complete enough to build)."""
    outdir.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"python -m build failed for {project}:\n{result.stdout}\n{result.stderr}"
    return found(project, outdir)


def found(project: Path, outdir: Path) -> Dists:
    sdists, wheels = sorted(outdir.glob("*.tar.gz")), sorted(outdir.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"{outdir} must hold one sdist and one wheel, not {sdists + wheels}"
    return Dists(project, sdists[0], wheels[0])


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Dists:
    if os.environ.get("ALG_DIST_DIR"):
        return found(ROOT, Path(os.environ["ALG_DIST_DIR"]))
    return build(ROOT, tmp_path_factory.mktemp("dist") / "core")


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> dict[str, Dists]:
    out = tmp_path_factory.mktemp("dist")
    return {name: build(ROOT / "plugins" / name, out / name) for name in PLUGINS}


def source_files(*paths: str) -> set[str]:
    """The files under `paths` that a build considers (git's, tracked or not ignored), relative to the root."""
    if not (ROOT / ".git").exists():  # an unpacked sdist: every file is a source file
        return {
            path.relative_to(ROOT).as_posix()
            for top in paths
            for path in (ROOT / top).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths]
    return set(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())


def check_license(dists: Dists) -> None:
    project = tomllib.loads((dists.project / "pyproject.toml").read_text())["project"]
    expression = project["license"]
    text = (dists.project / "LICENSE").read_text()
    first_lines = [line.strip() for line in text.strip().splitlines()[:2]]
    assert first_lines == list(LICENSE_TEXTS[expression]), f"{dists.project}/LICENSE is not the {expression} text"
    assert dists.wheel_file(".dist-info/licenses/LICENSE") == text
    assert dists.sdist_file("LICENSE") == text
    assert dists.metadata["License-Expression"] == expression
    assert dists.metadata.get_all("License-File") == ["LICENSE"]


def test_the_core_wheel_and_sdist_ship_the_apache_license(core):
    check_license(core)


@pytest.mark.parametrize("name", PLUGINS)
def test_every_plugin_wheel_and_sdist_ship_their_license(plugins, name):
    check_license(plugins[name])


@needs_comfyui_plugin
def test_the_comfyui_nodes_are_gpl_and_alg_guidance_is_apache():
    plugin = tomllib.loads((ROOT / COMFYUI_PLUGIN / "pyproject.toml").read_text())["project"]
    assert (PYPROJECT["project"]["license"], plugin["license"]) == ("Apache-2.0", "GPL-3.0-or-later")


def test_the_wheel_holds_every_package_file_and_nothing_else(core):
    dist_info = f"alg_guidance-{VERSION}.dist-info"
    names = core.wheel_names
    package = {name for name in names if not name.startswith(dist_info + "/")}
    assert package == source_files("alg_guidance")
    assert {"alg_guidance/presets.yaml", "alg_guidance/assets/sample.png", "alg_guidance/py.typed"} <= package
    assert not any(name.startswith(("tests/", "docs/", "plugins/")) for name in names)
    entry_points = core.wheel_file(".dist-info/entry_points.txt")
    assert "alg-guidance = alg_guidance.cli:main" in entry_points


def test_the_sdist_runs_the_core_suite_and_builds_the_docs(core):
    names = core.sdist_names
    needed = source_files("alg_guidance", "tests", "docs", "plugins/alg-guidance-example") | {
        "pyproject.toml",
        "mkdocs.yml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        ".ci/run",  # tests/test_docs.py checks that CI runs the README's test command
    }
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    for page in [name for name in names if name.startswith("docs/") and name.endswith(".md")]:
        for included in re.findall(r'--8<-- "([^"]+)"', core.sdist_file(page)):
            assert included in names, f"{page} includes {included}, which the sdist lacks: the docs would not build"


def test_the_sdist_holds_no_junk_and_not_the_gpl_nodes(core):
    names = core.sdist_names
    allowed_top = {"alg_guidance", "tests", "docs", "plugins", ".ci", "mkdocs.yml", "README.md", "CHANGELOG.md"}
    allowed_top |= {"LICENSE", "pyproject.toml", "PKG-INFO", ".gitignore"}
    assert {name.split("/")[0] for name in names} <= allowed_top
    assert not [name for name in names if name.startswith(".ci/") and name != ".ci/run"]
    junk = ("__pycache__", ".pyc", ".egg-info", ".pytest_cache", ".hypothesis", ".ruff_cache")
    assert not [name for name in names if any(part in name for part in junk)]
    assert not [name for name in names if name.startswith(COMFYUI_PLUGIN + "/")]


class Links(HTMLParser):
    """The `src` of every image and the `href` of every link in an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        elif tag == "a" and values.get("href") is not None:
            self.links.append(values["href"])


def rendered_links(dists: Dists) -> Links:
    """The README as a package index shows it: the wheel's long description through PyPI's renderer."""
    from readme_renderer.markdown import render

    metadata = dists.metadata
    assert metadata["Description-Content-Type"] == "text/markdown"
    html = render(metadata.get_payload())
    assert html, "readme_renderer could not render the README"
    links = Links()
    links.feed(html)
    return links


def test_the_readme_renders_on_a_package_index_with_absolute_links(core):
    links = rendered_links(core)
    assert len(links.images) == (ROOT / "README.md").read_text().count("![")
    relative = [url for url in links.images + links.links if not url.startswith(("https://", "#"))]
    assert not relative, f"links and images must be absolute on a package index page: {relative}"
    for url in links.images:
        assert url.startswith(RAW_MAIN), f"{url}: images come from the repository ({RAW_MAIN}...)"
        assert (ROOT / url.removeprefix(RAW_MAIN)).is_file(), f"{url} names no file of the repository"


@needs_comfyui_plugin
def test_the_comfyui_readme_has_absolute_links(plugins):
    links = rendered_links(plugins["comfyui-alg-guidance"])
    assert [url for url in links.images + links.links if not url.startswith(("https://", "#"))] == []


def test_twine_check_strict_passes(core):
    from twine.commands.check import check

    assert check([str(core.sdist), str(core.wheel)], strict=True) is False, "twine check --strict failed"


def test_project_urls_name_the_repository():
    urls = PYPROJECT["project"]["urls"]
    assert urls["Repository"] == REPOSITORY
    assert urls["Changelog"] == f"{REPOSITORY}/blob/main/CHANGELOG.md"


def changelog_releases() -> list[tuple[str, str]]:
    """The `## [...]` headings of CHANGELOG.md as (version, rest of the line), newest first."""
    return re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)


def test_the_changelog_keeps_an_unreleased_section_then_dated_releases_newest_first():
    headings = changelog_releases()
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases, "CHANGELOG.md has no release section"
    for version, rest in releases:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{version}: not X.Y.Z"
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"## [{version}]{rest}: the heading ends in ' - YYYY-MM-DD'"
    numbers = [tuple(map(int, version.split("."))) for version, _ in releases]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)
    text = (ROOT / "CHANGELOG.md").read_text()
    for version, _ in headings:
        assert re.search(rf"^\[{re.escape(version)}\]: {REPOSITORY}/", text, flags=re.M), f"no link for [{version}]"


def test_the_version_is_the_newest_changelog_release(core):
    newest = changelog_releases()[1][0]
    assert newest == VERSION, (
        f"pyproject.toml says {VERSION} but the newest CHANGELOG.md release is {newest}: a release moves the "
        "Unreleased entries under '## [X.Y.Z] - date' and sets the version to X.Y.Z in the same commit"
    )
    assert core.metadata["Version"] == VERSION
    assert f"Version: {VERSION}\n" in core.sdist_file("PKG-INFO")
    assert core.sdist.name == f"alg_guidance-{VERSION}.tar.gz"


@pytest.mark.skipif(not os.environ.get("ALG_RELEASE_TAG"), reason="ALG_RELEASE_TAG is set by the release workflow")
def test_the_release_tag_names_the_version():
    import alg_guidance

    tag = os.environ["ALG_RELEASE_TAG"]
    assert tag == f"v{VERSION}", f"the tag {tag} does not name the version in pyproject.toml ({VERSION})"
    assert alg_guidance.__version__ == VERSION, "the installed package reports another version"
