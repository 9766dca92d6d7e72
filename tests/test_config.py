from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import re
import typing
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import alg_guidance as alg
from alg_guidance.cli.options import parse_overrides
from alg_guidance.config import ALGConfig, resolve_config
from alg_guidance.config_text import dump_yaml, load_yaml
from alg_guidance.errors import ConfigError, short_repr
from alg_guidance.filters import BUILTIN_FILTERS, Butterworth, Downsample, Gaussian
from alg_guidance.registry import Registry
from alg_guidance.schedules import BUILTIN_SCHEDULES, Adaptive, Constant, Cosine, Exponential, Linear, Step

PRESET_NAMES = [preset.name for preset in alg.list_presets()]


def test_the_presets_the_issue_asks_for_exist_with_their_published_numbers():
    def settings(name):
        config = alg.get_preset(name).config
        return config.filter.factor, config.schedule.start, config.schedule.end, config.mode

    assert settings("paper") == (0.4, 0.0, 0.1, "auto")
    assert settings("wan2.1") == (0.4, 0.0, 0.2, "auto")
    assert settings("cogvideox") == (0.25, 0.0, 0.04, "auto")
    assert settings("hunyuanvideo") == (0.625, 0.0, 0.04, "replace")
    untuned = {preset.name for preset in alg.list_presets() if not preset.tuned}
    lightning = {"wan2.1-lightning", "wan2.2-lightning"}
    assert untuned == {"wan2.2", "ltx-video", "ltx2", "svd", "skyreels-v2", *lightning}
    assert all(settings(name) == (0.4, 0.0, 0.1, "auto") for name in untuned - lightning)
    for name in lightning:  # step-distilled at CFG 1: one low-passed evaluation while the noise level is >= 0.9
        config = alg.get_preset(name).config
        assert (config.filter.factor, config.schedule.kind, config.schedule.threshold, config.mode) == (
            0.4,
            "adaptive",
            0.9,
            "replace",
        )


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_round_trips_through_dict_json_yaml_and_files(name, tmp_path):
    config = alg.get_preset(name).config
    assert ALGConfig.model_validate(config.model_dump()) == config
    assert ALGConfig.model_validate_json(config.model_dump_json()) == config
    assert ALGConfig.from_yaml(config.to_yaml()) == config
    assert ALGConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json")))) == config
    for suffix in (".yaml", ".yml", ".json"):
        path = tmp_path / f"config{suffix}"
        config.save(path)
        assert ALGConfig.from_file(path) == config
        assert resolve_config(path) == resolve_config(str(path)) == config
    assert resolve_config(name) == config
    assert ALGConfig.model_validate({"preset": name}) == config


def test_builtin_kinds_round_trip_with_their_own_classes():
    config = ALGConfig(filter=Butterworth(cutoff=0.3, order=4), schedule=Adaptive(threshold=0.8, ramp=0.1))
    data = config.model_dump()
    assert data["filter"] == {"kind": "butterworth", "cutoff": 0.3, "order": 4}
    assert data["schedule"] == {"kind": "adaptive", "threshold": 0.8, "ramp": 0.1}
    assert ALGConfig.model_validate(data) == config


def test_defaults_are_the_paper_default():
    assert ALGConfig() == alg.get_preset("paper").config
    assert ALGConfig(filter="gaussian").filter == Gaussian()


def test_a_third_party_filter_works_by_name_in_a_config():
    config = ALGConfig.from_yaml("filter: {kind: median, radius: 3}\nschedule: {kind: step, end: 0.2}\n")
    assert type(config.filter).__module__ == "alg_guidance_example"
    assert config.filter.radius == 3
    assert ALGConfig.model_validate(config.model_dump()) == config


def test_an_isolated_registry_decides_which_kinds_a_config_accepts():
    without_plugins = Registry(entry_points=False)
    with pytest.raises(ValidationError, match="unknown filter 'median'; available: butterworth, downsample, gaussian"):
        ALGConfig.model_validate({"filter": {"kind": "median"}}, context={"registry": without_plugins})
    assert resolve_config({"filter": "gaussian"}, registry=without_plugins).filter == Gaussian()


def test_preset_with_overrides_and_merge():
    config = ALGConfig.model_validate({"preset": "wan2.1", "filter": {"factor": 0.3}, "space": "pixel"})
    assert (config.filter, config.schedule, config.space) == (Downsample(factor=0.3), Step(end=0.2), "pixel")
    merged = config.merge({"schedule.end": 0.3, "batch_branches": False})
    assert (merged.schedule, merged.batch_branches, merged.filter) == (Step(end=0.3), False, config.filter)
    switched = config.merge({"filter": {"kind": "gaussian", "sigma": 2.0}})
    assert switched.filter == Gaussian(sigma=2.0)  # a new kind replaces the old parameters
    with pytest.raises(ValidationError, match="sigma"):
        config.merge({"filter": {"kind": "gaussian", "sigma": -2.0}})
    assert config.filter.factor == 0.3  # frozen: the original is untouched


def test_configs_are_frozen():
    config = ALGConfig()
    with pytest.raises(ValidationError):
        config.space = "pixel"
    with pytest.raises(ValidationError):
        config.filter.factor = 0.1


def test_yaml_is_loaded_safely():
    with pytest.raises(
        ConfigError, match=r"line 1, column 9: the tag '!!python/object/apply:os.system' is not allowed"
    ):
        ALGConfig.from_yaml("filter: !!python/object/apply:os.system ['echo unsafe']\n")


def test_resolve_config_accepts_every_form_and_rejects_the_rest(tmp_path):
    config = ALGConfig(filter=Gaussian(sigma=2.0))
    assert resolve_config(config) is config
    assert resolve_config({"filter": {"kind": "gaussian", "sigma": 2.0}}) == config
    unknown = r"unknown preset 'wan'; available: cogvideox, .*wan2\.1, .*wan2\.2"
    with pytest.raises(alg.UnknownPluginError, match=unknown):
        resolve_config("wan")
    with pytest.raises(TypeError, match="an ALG config is an ALGConfig, a mapping, a preset name or a"):
        resolve_config(42)
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.yaml.*: No such file"):
        resolve_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"must end in one of \.yaml, \.yml, \.json"):
        ALGConfig.from_file(tmp_path / "config.toml")
    with pytest.raises(ConfigError, match=r"must end in one of \.yaml, \.yml, \.json"):
        config.save(tmp_path / "config.toml")


# At least twenty kinds of bad configuration, each rejected with an error located at the offending field.
BAD_CONFIGS = [
    ({"filter": {"kind": "gausian"}}, ("filter", "kind"), "did you mean 'gaussian'"),
    ({"filter": {"factor": 0.4}}, ("filter",), "mapping with a 'kind' key"),
    ({"filter": 0.4}, ("filter",), "a filter object, a filter name"),
    ({"filter": {"kind": "downsample", "factor": 0.0}}, ("filter", "factor"), "greater than 0"),
    ({"filter": {"kind": "downsample", "factor": 1.0}}, ("filter", "factor"), "less than 1"),
    ({"filter": {"kind": "downsample", "factor": "0.4"}}, ("filter", "factor"), "valid number"),
    ({"filter": {"kind": "downsample", "factor": True}}, ("filter", "factor"), "valid number"),
    ({"filter": {"kind": "downsample", "factor": math.nan}}, ("filter", "factor"), "finite number"),
    ({"filter": {"kind": "downsample", "factr": 0.4}}, ("filter", "factr"), "Extra inputs are not permitted"),
    ({"filter": {"kind": "gaussian", "sigma": 0.0}}, ("filter", "sigma"), "greater than or equal to 0.5"),
    ({"filter": {"kind": "gaussian", "sigma": math.inf}}, ("filter", "sigma"), "finite number"),
    ({"filter": {"kind": "gaussian", "border": "wrap"}}, ("filter", "border"), "'reflect', 'replicate'"),
    ({"filter": {"kind": "butterworth", "order": 0}}, ("filter", "order"), "greater than or equal to 1"),
    ({"filter": {"kind": "butterworth", "order": 2.5}}, ("filter", "order"), "valid integer"),
    ({"filter": {"kind": "butterworth", "cutoff": 1.5}}, ("filter", "cutoff"), "less than 1"),
    ({"filter": {"kind": "median", "radius": 20}}, ("filter", "radius"), "less than or equal to 8"),
    ({"schedule": {"kind": "interval"}}, ("schedule", "kind"), "unknown schedule 'interval'"),
    ({"schedule": {"kind": "step", "end": 1.2}}, ("schedule", "end"), "less than or equal to 1"),
    ({"schedule": {"kind": "step", "start": -0.1}}, ("schedule", "start"), "greater than or equal to 0"),
    ({"schedule": {"kind": "step", "start": 0.5, "end": 0.2}}, ("schedule",), "start (0.5) must not exceed end"),
    ({"schedule": {"kind": "linear", "end": 0.0}}, ("schedule", "end"), "greater than 0"),
    ({"schedule": {"kind": "linear", "end_weight": 1.5}}, ("schedule", "end_weight"), "less than or equal to 1"),
    ({"schedule": {"kind": "exponential", "rate": -2.0}}, ("schedule", "rate"), "greater than or equal to 0"),
    ({"schedule": {"kind": "constant", "value": 2}}, ("schedule", "value"), "less than or equal to 1"),
    ({"schedule": {"kind": "adaptive", "threshold": 0.95, "ramp": 0.1}}, ("schedule",), "must not exceed 1"),
    ({"schedule": {"kind": "cosine", "end": -0.2}}, ("schedule", "end"), "greater than 0"),
    ({"space": "frequency"}, ("space",), "'latent' or 'pixel'"),
    ({"mode": "cfg"}, ("mode",), "'auto', 'alg' or 'replace'"),
    ({"batch_branches": "yes"}, ("batch_branches",), "valid boolean"),
    ({"guidance": 5.0}, ("guidance",), "Extra inputs are not permitted"),
    ({"preset": "wan2"}, ("preset",), "unknown preset 'wan2'"),
    ({"preset": "wan2.1", "filter": {"factor": 2.0}}, ("filter", "factor"), "less than 1"),
]


@pytest.mark.parametrize(("data", "loc", "message"), BAD_CONFIGS, ids=[str(case[0]) for case in BAD_CONFIGS])
def test_bad_configs_are_rejected_naming_the_field(data, loc, message):
    with pytest.raises(ValidationError) as caught:
        ALGConfig.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == loc
    assert message in str(caught.value)


def test_there_are_at_least_twenty_kinds_of_bad_config():
    assert len(BAD_CONFIGS) >= 20


# Each bounded numeric field of each builtin, with the values it accepts.
BOUNDED_FIELDS = {
    "downsample.factor": ("filter", Downsample, lambda v: 0 < v < 1),
    "gaussian.sigma": ("filter", Gaussian, lambda v: 0.5 <= v <= 1000),
    "gaussian.truncate": ("filter", Gaussian, lambda v: 0 < v <= 10),
    "butterworth.cutoff": ("filter", Butterworth, lambda v: 0.001 <= v < 1),
    "step.end": ("schedule", Step, lambda v: 0 <= v <= 1),
    "linear.start_weight": ("schedule", Linear, lambda v: 0 <= v <= 1),
    "linear.end": ("schedule", Linear, lambda v: 0 < v <= 1),
    "cosine.end": ("schedule", Cosine, lambda v: 0 < v <= 1),
    "exponential.rate": ("schedule", Exponential, lambda v: v >= 0),
    "exponential.floor": ("schedule", Exponential, lambda v: 0 <= v <= 1),
    "constant.value": ("schedule", Constant, lambda v: 0 <= v <= 1),
}


@pytest.mark.parametrize("name", BOUNDED_FIELDS)
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.5, 1.0, -0.0]))
def test_any_out_of_range_value_is_rejected_at_its_field(name, value):
    section, plugin_class, accepts = BOUNDED_FIELDS[name]
    field = name.split(".")[1]
    data = {section: {"kind": plugin_class.model_fields["kind"].default, field: value}}
    if math.isfinite(value) and accepts(value):
        assert getattr(getattr(ALGConfig.model_validate(data), section), field) == value
        return
    with pytest.raises(ValidationError) as caught:
        ALGConfig.model_validate(data)
    assert caught.value.errors()[0]["loc"] == (section, field)


# Numbers are read as YAML 1.2 reads them, by the one reader every entry point uses.
NUMBERS = [("4e-1", 0.4), ("4E-1", 0.4), ("+.4", 0.4), ("0.4", 0.4), ("4.e-1", 0.4), ("40e-2", 0.4)]


@pytest.mark.parametrize(("text", "value"), NUMBERS)
def test_exponents_and_other_yaml_1_2_numbers_read_as_numbers_everywhere(text, value, tmp_path):
    expected = ALGConfig(filter=Downsample(factor=value))
    assert ALGConfig.from_yaml(f"filter: {{kind: downsample, factor: {text}}}") == expected
    path = tmp_path / "config.yaml"
    path.write_text(f"filter:\n  kind: downsample\n  factor: {text}\n")
    assert ALGConfig.from_file(path) == resolve_config(path) == expected
    assert ALGConfig().merge(parse_overrides([f"filter.factor={text}"])) == expected


def test_yaml_1_1_spellings_are_not_numbers():
    assert load_yaml("[010, 0o10, 0x10, 1_000, '1e5', 1:30, 2026-01-01, <<]") == [
        10, 8, 16, "1_000", "1e5", "1:30", "2026-01-01", "<<",
    ]  # fmt: skip
    assert load_yaml("[1e5, 1E+5, .inf, -.INF]") == [1e5, 1e5, math.inf, -math.inf]


def test_strings_that_read_as_numbers_are_quoted_when_written():
    data = {"a": "1e5", "b": "010", "c": ".5", "d": "yes", "e": 1e-5, "f": 1e300, "g": math.inf}
    assert load_yaml(dump_yaml(data)) == data


def test_no_module_reads_yaml_but_the_config_reader():
    package = Path(alg.__file__).parent
    readers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if re.search(r"yaml\.(safe_)?load|SafeLoader", path.read_text(encoding="utf-8"))
    }
    assert readers == {"config_text.py"}


@pytest.mark.parametrize("name", [None, 123, 0.5, True, ["wan2.1"], {"name": "wan2.1"}, "x" * 100_000])
def test_a_preset_or_kind_that_is_not_a_name_is_a_validation_error_listing_the_names(name):
    for data, loc, available in [
        ({"preset": name}, ("preset",), "cogvideox, hunyuanvideo"),
        ({"filter": {"kind": name}}, ("filter", "kind"), "butterworth, downsample, gaussian"),
        ({"schedule": {"kind": name}}, ("schedule", "kind"), "adaptive, constant, cosine"),
    ]:
        with pytest.raises(ValidationError) as caught:
            ALGConfig.model_validate(data)
        [error] = caught.value.errors()
        assert error["loc"] == loc
        assert available in str(caught.value)
        assert len(str(caught.value)) < 1000


@pytest.mark.parametrize(
    ("overrides", "loc", "message"),
    [
        (None, (), "overrides must be a mapping of field names"),
        (["filter.factor", 0.3], (), "got list"),
        ({1: 0.3}, ("1",), "an override key is a field name"),
        ({"a." * 100: 1}, (short_repr("a." * 100),), "at most 16 of them joined by dots"),
        ({"preset.x": 1}, ("preset",), "unknown preset {'x': 1}"),
        ({"filter.kind": ["gaussian"]}, ("filter", "kind"), "unknown filter ['gaussian']"),
        ({"filter": "gaussian", "filter.sigma": 2.0}, ("filter", "sigma"), "'filter' and 'filter.sigma' both set"),
        (
            {"filter.sigma": 2.0, "filter": {"kind": "gaussian"}},
            ("filter", "sigma"),
            "give a section whole or field by field",
        ),
    ],
)
def test_bad_overrides_are_validation_errors(overrides, loc, message):
    with pytest.raises(ValidationError) as caught:
        ALGConfig().merge(overrides)
    [error] = caught.value.errors()
    assert error["loc"] == loc
    assert message in str(caught.value)


def test_merge_changes_neither_the_config_nor_its_argument():
    config = ALGConfig()
    for overrides in (
        {"filter": {"kind": "downsample", "factor": 0.3}, "schedule.end": 0.3},
        {"filter": {"kind": "gaussian"}, "filter.sigma": 2.0},  # refused, but left as it was
    ):
        before = copy.deepcopy(overrides)
        with contextlib.suppress(ValidationError):
            config.merge(overrides)
        assert overrides == before
    assert config == ALGConfig()


def billion_laughs(levels: int = 9) -> str:
    """The YAML alias bomb: each level repeats the one before nine times, 9**levels strings in all."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    items = [", ".join(['"lol"'] * 9)] + [", ".join([f"*{name}"] * 9) for name in names[:-1]]
    lines = [f"{name}: &{name} [{repeated}]" for name, repeated in zip(names, items, strict=True)]
    return "\n".join([*lines, f"filter: {{kind: downsample, factor: *{names[-1]}}}", ""])


def test_an_alias_bomb_is_refused_while_it_is_read(tmp_path):
    bomb = billion_laughs()
    assert len(bomb.encode()) < 500
    message = r"line \d+, column \d+: with its aliases expanded, a config may hold at most 10000 values"
    with pytest.raises(ConfigError, match=message):
        ALGConfig.from_yaml(bomb)
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}, {message}"):
        ALGConfig.from_file(path)
    # aliases within the budget work; a repeated string counts by its length
    shared = load_yaml("gaussian: &g {kind: gaussian, sigma: 2.0}\nfilter: *g\n")
    assert ALGConfig(filter=shared["filter"]) == ALGConfig(filter=Gaussian(sigma=2.0))
    long = "x" * 10_000
    with pytest.raises(ConfigError, match="65536 characters of text"):
        load_yaml(f"a: &a {long}\nb: [*a, *a, *a, *a, *a, *a, *a]\n")


UNREADABLE = [
    ("[" * 500 + "]" * 500, ".yaml", r"line 1, column 17: mappings and lists may be nested at most 16 deep"),
    ("[" * 500 + "]" * 500, ".json", r"line 1: objects and arrays may be nested at most 16 deep"),
    ('{"a": "[[[[[[[[[[[[[[[[[[[[", "b": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}', ".json", "nested at most 16"),
    ("filter: [1, 2\n", ".yaml", r"line 2, column 1: while parsing a flow sequence"),
    ('{"filter": }', ".json", r"line 1, column 12: Expecting value"),
    ("&a [*a]\n", ".yaml", r"line 1, column 5: an alias may not refer to a node that contains it"),
    ("filter: *nothing\n", ".yaml", r"line 1, column 9: found undefined alias 'nothing'"),
    ("filter: !!binary aGk=\n", ".yaml", r"the tag '!!binary' is not allowed: a config holds mappings, lists"),
    ("filter: !median {}\n", ".yaml", r"the tag '!median' is not allowed"),
    ("schedule: {end: !!float 1_0}\n", ".yaml", r"'1_0' is not a YAML 1.2 number"),
    ("mode: !!int " + "1" * 5000 + "\n", ".yaml", "is too long"),
    ('{"mode": ' + "1" * 5000 + "}", ".json", "Exceeds the limit"),
    ("mode: a\x00b\n", ".yaml", r"unacceptable character #x0000"),
]


@pytest.mark.parametrize(("text", "suffix", "message"), UNREADABLE, ids=lambda case: str(case)[:40])
def test_unreadable_config_text_raises_config_error_naming_the_file_and_line(text, suffix, message, tmp_path):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}.*{message}") as caught:
        ALGConfig.from_file(path)
    assert len(str(caught.value)) < 500


def test_a_large_config_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "large.yaml"
    with path.open("wb") as file:
        file.truncate(50_000_000)  # sparse: 50 MB of NUL bytes, never read
    with pytest.raises(ConfigError, match=r"large\.yaml is longer than the 65536 bytes a config may have"):
        ALGConfig.from_file(path)
    with pytest.raises(ConfigError, match="longer than the 65536 characters"):
        ALGConfig.from_yaml("#" * 70_000)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("mode: r\xe9place\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 7 is 0xe9\)"):
        ALGConfig.from_file(path)


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (["filter.factor"], "--set expects KEY=VALUE, such as filter.factor=0.3; got 'filter.factor'"),
        (["=0.3"], "--set expects KEY=VALUE"),
        (["filter={kind: gaussian"], r"--set 'filter', line 1, column 16: while parsing a flow mapping"),
        (["filter=!!python/name:os.system"], r"--set 'filter', line 1, column 1: the tag '!!python/name:os.system'"),
    ],
)
def test_unreadable_set_overrides_raise_config_error(assignments, message):
    with pytest.raises(ConfigError, match=re.escape(message) if "line" not in message else message):
        parse_overrides(assignments)


@pytest.mark.parametrize(
    "data",
    [
        {"filter": {"kind": "downsample", "factor": list(range(100_000))}},
        {"filter": {"kind": "x" * 100_000}},
        {"filter": ["x" * 100_000] * 100},
        {"schedule": {"kind": "step", "end": {"x" * 1000: list(range(1000))}}},
        {"space": "x" * 100_000, "mode": list(range(100_000))},
    ],
    ids=["long list", "long kind", "long strings", "nested", "two fields"],
)
def test_validation_errors_show_bounded_excerpts_of_the_input(data):
    with pytest.raises(ValidationError) as caught:
        ALGConfig.model_validate(data)
    assert len(str(caught.value)) < 1000


def documented_attributes(cls: type) -> dict[str, str]:
    """The `Attributes:` section of a class docstring, as {name: text on one line}."""
    section = inspect.cleandoc(cls.__doc__).split("Attributes:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", section, re.S | re.M)
    return {name: " ".join(text.split()) for name, text in entries}


def documented_range(field) -> str:
    """The range a field's constraints allow, as the docs write it: `[0, 1]`, `(0, 10]`, `[0, inf)`."""
    bounds = {
        name: getattr(item, name) for item in field.metadata for name in ("ge", "gt", "le", "lt") if hasattr(item, name)
    }
    low = f"[{bounds['ge']:g}" if "ge" in bounds else f"({bounds['gt']:g}"
    high = f"{bounds['le']:g}]" if "le" in bounds else f"{bounds['lt']:g})" if "lt" in bounds else "inf)"
    return f"`{low}, {high}`"


@pytest.mark.parametrize("plugin_class", [*BUILTIN_FILTERS, *BUILTIN_SCHEDULES], ids=lambda cls: cls.__name__)
def test_every_builtin_parameter_documents_its_meaning_range_and_default(plugin_class):
    documented = documented_attributes(plugin_class)
    fields = {name: field for name, field in plugin_class.model_fields.items() if name != "kind"}
    assert set(documented) == set(fields)
    for name, field in fields.items():
        text = documented[name]
        assert text.endswith(f"Default `{json.dumps(field.default)}`."), (name, text)
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else ()
        expected = [f"`{json.dumps(choice)}`" for choice in choices] or [documented_range(field)]
        assert all(part in text for part in expected), (name, text, expected)
