from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import warnings

import pytest

import alg_guidance as alg
from alg_guidance.errors import PluginLoadWarning, RegistrationError, UnknownPluginError
from alg_guidance.filters import Downsample, Gaussian
from alg_guidance.registry import BLOCK_ENV_VAR, BUILTIN_PLUGINS, Registry

MEDIAN_SOURCE = """
from typing import Literal
import alg_guidance as alg

class {name}(alg.Filter):
    kind: Literal["{kind}"] = "{kind}"

    def filter_planes(self, planes, strength):
        return planes * (1 - strength)

@alg.hookimpl
def alg_register_filters(register):
    register({name})
"""


def filter_plugin(kind: str, name: str = "Custom") -> str:
    return MEDIAN_SOURCE.format(kind=kind, name=name)


def test_importing_the_package_loads_no_plugin_and_neither_diffusers_nor_k_diffusion():
    code = (
        "import sys, alg_guidance\n"
        "loaded = [m for m in ('diffusers', 'k_diffusion', 'alg_guidance_example', 'kornia') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_builtins_are_plugins_registered_through_the_hooks():
    plugins = Registry(entry_points=False).plugins()
    assert [plugin.name for plugin in plugins] == list(BUILTIN_PLUGINS)
    assert {plugin.distribution for plugin in plugins} == {"alg-guidance"}
    assert plugins[0].filters == ("downsample", "gaussian", "butterworth")
    assert plugins[1].schedules == ("step", "linear", "cosine", "exponential", "constant", "adaptive")


def test_registry_loads_lazily_on_first_lookup(distributions):
    module = distributions.install("lazy-plugin", filter_plugin("lazy"))
    registry = Registry()
    assert module not in sys.modules
    assert registry.filter("lazy").__name__ == "Custom"
    assert module in sys.modules


def test_load_order_is_builtins_then_entry_points_then_plugins_added_by_hand(distributions):
    distributions.install("third-party", filter_plugin("third"))

    class ByHand:
        @alg.hookimpl
        def alg_register_filters(self, register):
            register(Downsample)  # the same class again is not a collision

    registry = Registry()
    registry.add_plugin(ByHand(), name="by-hand")
    names = [plugin.name for plugin in registry.plugins()]
    assert names[:3] == list(BUILTIN_PLUGINS)
    assert names.index("third-party") < names.index("by-hand") == len(names) - 1
    assert "alg-guidance-example" in names  # the installed example plugin, from its entry point


def test_installed_example_plugin_is_discovered_through_its_entry_point():
    [example] = [plugin for plugin in alg.list_plugins() if plugin.name == "alg-guidance-example"]
    assert (example.distribution, example.version, example.filters) == ("alg-guidance-example", "0.1.0", ("median",))
    assert alg.default_registry().filter("median").__module__ == "alg_guidance_example"


def test_environment_variable_blocks_named_plugins_builtin_or_installed(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV_VAR, " alg-guidance-example , alg_guidance.schedules")
    registry = Registry()
    names = [plugin.name for plugin in registry.plugins()]
    assert "alg-guidance-example" not in names and "alg_guidance.schedules" not in names
    assert "median" not in registry.filters()
    with pytest.raises(UnknownPluginError, match="unknown schedule 'step'"):
        registry.schedule("step")
    assert registry.filter("downsample") is Downsample


def test_blocked_argument_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV_VAR, "alg_guidance.filters")
    assert "downsample" in Registry(blocked=[]).filters()


def test_unknown_names_list_what_is_available():
    registry = Registry(entry_points=False)
    with pytest.raises(UnknownPluginError) as caught:
        registry.filter("gausian")
    assert str(caught.value) == (
        "unknown filter 'gausian'; available: butterworth, downsample, gaussian (did you mean 'gaussian'?)"
    )
    with pytest.raises(UnknownPluginError, match="available: adaptive, constant, cosine, exponential, linear, step"):
        registry.schedule("nope")
    with pytest.raises(UnknownPluginError, match=r"unknown adapter 'nope'; available: "):
        registry.adapter("nope")


def test_a_colliding_installed_plugin_is_skipped_with_a_warning_naming_both_providers(distributions):
    distributions.install("copycat", filter_plugin("downsample"), version="2.5")
    registry = Registry()
    with pytest.warns(PluginLoadWarning) as warned:
        registry.load()
    message = str(warned[0].message)
    assert "plugin 'copycat' (distribution copycat 2.5)" in message
    assert "plugin 'alg_guidance.filters' (distribution alg-guidance" in message
    assert registry.filter("downsample") is Downsample
    [copycat] = [plugin for plugin in registry.plugins() if plugin.name == "copycat"]
    assert copycat.filters == () and "collides with filter 'downsample'" in copycat.error


def test_a_collision_added_by_hand_raises_naming_both_providers():
    registry = Registry(entry_points=False)

    class Clash:
        @alg.hookimpl
        def alg_register_filters(self, register):
            register(type("OtherGaussian", (Gaussian,), {}))

    with pytest.raises(RegistrationError) as caught:
        registry.add_plugin(Clash(), name="clash")
        registry.load()
    assert "plugin 'clash'" in str(caught.value)
    assert "already registered by plugin 'alg_guidance.filters'" in str(caught.value)


BROKEN_PLUGINS = {
    "import-error": ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    "misspelled-hook": (
        "import alg_guidance as alg\n@alg.hookimpl\ndef alg_register_filter(register):\n    pass\n",
        "unknown hook 'alg_register_filter'",
    ),
    "wrong-argument": (
        "import alg_guidance as alg\n@alg.hookimpl\ndef alg_register_filters(registrar):\n    pass\n",
        "registrar",
    ),
    "hook-raises": (
        "import alg_guidance as alg\n@alg.hookimpl\ndef alg_register_schedules(register):\n    1 / 0\n",
        "ZeroDivisionError",
    ),
    "not-a-class": (
        "import alg_guidance as alg\n@alg.hookimpl\ndef alg_register_filters(register):\n    register(len)\n",
        "takes a subclass of alg_guidance.filters.Filter",
    ),
    "wrong-base": (
        "import alg_guidance as alg\nfrom alg_guidance.filters import Downsample\n"
        "@alg.hookimpl\ndef alg_register_schedules(register):\n    register(Downsample)\n",
        "takes a subclass of alg_guidance.schedules.Schedule",
    ),
    "no-kind": (
        "import alg_guidance as alg\nclass Nameless(alg.Filter):\n    pass\n"
        "@alg.hookimpl\ndef alg_register_filters(register):\n    register(Nameless)\n",
        "declares no valid filter name",
    ),
}


@pytest.mark.parametrize("distribution", BROKEN_PLUGINS)
def test_a_broken_installed_plugin_is_reported_and_skipped(distributions, distribution):
    source, expected = BROKEN_PLUGINS[distribution]
    distributions.install(distribution, source)
    registry = Registry()
    with pytest.warns(
        PluginLoadWarning, match=f"skipped plugin '{distribution}' \\(distribution {distribution} 1.0\\)"
    ):
        plugins = registry.plugins()
    [broken] = [plugin for plugin in plugins if plugin.name == distribution]
    assert expected in broken.error
    assert registry.filter("downsample") is Downsample and registry.schedule("step").__name__ == "Step"
    assert registry.filter("median")  # the other installed plugin still loads


def test_a_plugin_failing_halfway_keeps_nothing_it_registered(distributions):
    source = filter_plugin("halfway") + "\n@alg.hookimpl\ndef alg_register_schedules(register):\n    register(int)\n"
    distributions.install("halfway", source)
    registry = Registry()
    with pytest.warns(PluginLoadWarning, match="halfway"):
        registry.load()
    assert "halfway" not in registry.filters()
    [halfway] = [plugin for plugin in registry.plugins() if plugin.name == "halfway"]
    assert halfway.filters == () and "takes a subclass of alg_guidance.schedules.Schedule" in halfway.error


def test_two_distributions_with_the_same_entry_point_name_keep_the_first(distributions):
    distributions.install("first-dist", filter_plugin("first"), entry_point="shared-name")
    distributions.install("second-dist", filter_plugin("second"), entry_point="shared-name")
    registry = Registry()
    with pytest.warns(
        PluginLoadWarning, match="the plugin name 'shared-name' is already taken by plugin 'shared-name'"
    ):
        registry.load()
    assert len({"first", "second"} & set(registry.filters())) == 1


def test_isolated_registries_do_not_share_plugins():
    from typing import Literal

    class Wide(alg.Filter):
        kind: Literal["wide"] = "wide"

    class Extra:
        @alg.hookimpl
        def alg_register_filters(self, register):
            register(Wide)

    one, two = Registry(entry_points=False), Registry(entry_points=False)
    one.add_plugin(Extra(), name="extra")
    assert one.filter("wide") is Wide
    assert "wide" not in two.filters() and "wide" not in alg.default_registry().filters()
    assert alg.default_registry() is alg.default_registry()


def test_add_plugin_after_loading_registers_at_once():
    from typing import Literal

    class Sharpen(alg.Filter):
        kind: Literal["late"] = "late"

    class Late:
        @alg.hookimpl
        def alg_register_filters(self, register):
            register(Sharpen)

    registry = Registry(entry_points=False)
    registry.load()
    registry.add_plugin(Late(), name="late")
    assert registry.filter("late") is Sharpen
    assert registry.plugins()[-1].filters == ("late",)


def test_threads_looking_up_at_once_all_wait_for_one_complete_load(distributions):
    distributions.install("slow-plugin", "import time\ntime.sleep(0.3)\n" + filter_plugin("slow"))
    registry = Registry()
    barrier = threading.Barrier(8)
    found: list[object] = []

    def look_up() -> None:
        barrier.wait()
        found.append((registry.filter("slow"), registry.filter("median"), registry.adapter("wan2.1")))

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert [plugin.name for plugin in registry.plugins()].count("slow-plugin") == 1


def test_a_fresh_process_used_from_eight_threads_at_once_finds_everything():
    code = (
        "import threading, alg_guidance as alg\n"
        "barrier, errors = threading.Barrier(8), []\n"
        "def use():\n"
        "    barrier.wait()\n"
        "    try:\n"
        "        alg.ALGConfig(filter='median', schedule='linear')\n"
        "        alg.default_registry().adapter('wan2.1')\n"
        "    except Exception as error:\n"
        "        errors.append(error)\n"
        "threads = [threading.Thread(target=use) for _ in range(8)]\n"
        "[thread.start() for thread in threads]\n"
        "[thread.join() for thread in threads]\n"
        "assert not errors, errors\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_plugin_warning_turned_into_an_error_leaves_the_registry_unloaded_for_the_next_lookup(distributions):
    distributions.install("broken", "raise ImportError('broken on purpose')\n")
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        with pytest.raises(PluginLoadWarning, match="broken on purpose"):
            registry.filter("downsample")
    with pytest.warns(PluginLoadWarning, match="broken on purpose"):
        assert registry.filter("downsample") is Downsample
    assert registry.filter("median")
    assert [plugin.name for plugin in registry.plugins()].count("alg_guidance.filters") == 1


@pytest.mark.parametrize("exit_source", ["raise SystemExit(3)\n", "raise KeyboardInterrupt\n"])
def test_a_plugin_exiting_while_the_registry_loads_leaves_it_unloaded(distributions, exit_source):
    distributions.install("exits", exit_source)
    registry = Registry()
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        registry.filters()
    shutil.rmtree(next(distributions.root.glob("exits-*.dist-info")))  # uninstalled: the next lookup retries
    assert registry.filter("downsample") is Downsample and registry.filter("median")
    assert [plugin.name for plugin in registry.plugins()][:3] == list(BUILTIN_PLUGINS)


def test_the_block_list_matches_entry_point_and_distribution_names_case_insensitively(distributions):
    distributions.install("Fancy-Filters", filter_plugin("fancy"), entry_point="fancy")
    assert "fancy" in Registry().filters()
    for blocked in ("FANCY", "fancy_filters", "Fancy.Filters", "ALG-Guidance-Example"):
        filters = Registry(blocked=[blocked]).filters()
        assert ("fancy" in filters) == blocked.startswith("ALG")
        assert ("median" in filters) != blocked.startswith("ALG")


def test_a_blocked_builtins_names_stay_reserved(distributions):
    distributions.install("copycat", filter_plugin("downsample"))
    registry = Registry(blocked=["ALG_GUIDANCE.FILTERS"])
    with pytest.warns(PluginLoadWarning, match="takes the name of a builtin filter of alg_guidance.filters"):
        filters = registry.filters()
    assert "downsample" not in filters and "median" in filters
    with pytest.raises(UnknownPluginError, match="unknown filter 'downsample'"):
        registry.filter("downsample")
