from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import alg_guidance as alg
from alg_guidance.config import ALGConfig, resolve_config
from alg_guidance.filters import Butterworth, Downsample, Gaussian
from alg_guidance.registry import Registry
from alg_guidance.schedules import Adaptive, Constant, Cosine, Exponential, Linear, Step

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
    assert untuned == {"wan2.2", "ltx-video", "svd", "skyreels-v2"}
    assert all(settings(name) == (0.4, 0.0, 0.1, "auto") for name in untuned)


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
    with pytest.raises(yaml.constructor.ConstructorError):
        ALGConfig.from_yaml("filter: !!python/object/apply:os.system ['echo unsafe']\n")


def test_resolve_config_accepts_every_form_and_rejects_the_rest(tmp_path):
    config = ALGConfig(filter=Gaussian(sigma=2.0))
    assert resolve_config(config) is config
    assert resolve_config({"filter": {"kind": "gaussian", "sigma": 2.0}}) == config
    with pytest.raises(alg.UnknownPluginError, match=r"unknown preset 'wan'; available: cogvideox, .*wan2\.1, wan2\.2"):
        resolve_config("wan")
    with pytest.raises(TypeError, match="an ALG config is an ALGConfig, a mapping, a preset name or a"):
        resolve_config(42)
    with pytest.raises(FileNotFoundError):
        resolve_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"must end in one of \.yaml, \.yml, \.json"):
        ALGConfig.from_file(tmp_path / "config.toml")


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
    "gaussian.sigma": ("filter", Gaussian, lambda v: v >= 0.5),
    "gaussian.truncate": ("filter", Gaussian, lambda v: v > 0),
    "butterworth.cutoff": ("filter", Butterworth, lambda v: 0 < v < 1),
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
