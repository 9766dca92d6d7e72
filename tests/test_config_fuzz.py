"""Every config entry point, fuzzed: each input validates or is refused with ValidationError or ConfigError.

A config that validates must also work: its filter runs on a latent (or refuses that latent's size with a
ConfigError), its schedule returns strengths in [0, 1], and it reads back from its own YAML. Error messages
stay short whatever the input.

CI runs a few examples per route. For figures, run the module as a script; it counts the outcomes instead of
stopping at the first input that escapes, and times the refusal of the alias bomb:

    python -m tests.test_config_fuzz --examples 3000
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import typing
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import alg_guidance as alg
from alg_guidance.cli.options import parse_overrides
from alg_guidance.config import ALGConfig, resolve_config
from alg_guidance.errors import ConfigError
from alg_guidance.schedules import StepState

CI_EXAMPLES = 60
LONGEST_MESSAGE_LINE = 500
LATENT = torch.randn(1, 2, 12, 20, generator=torch.Generator().manual_seed(0))

PRESETS = [preset.name for preset in alg.list_presets()]
FILTERS = dict(alg.default_registry().filters())
SCHEDULES = dict(alg.default_registry().schedules())
FILTER_PARAMETERS = ["factor", "sigma", "truncate", "border", "cutoff", "order", "radius"]
SCHEDULE_PARAMETERS = ["start", "end", "start_weight", "end_weight", "rate", "floor", "value", "threshold", "ramp"]
FIELDS = ["filter", "schedule", "space", "mode", "batch_branches", "preset"]

# Leaves: every JSON-like scalar, with the numbers where the bounds are.
numbers = st.one_of(
    st.floats(),
    st.floats(-2, 2),
    st.integers(-3, 20),
    st.integers(),
    st.sampled_from(
        [0.0, -0.0, 1e-300, 1e-17, 0.001, 0.5, 1.0, 3.0, 10.0, 25.0, 1000.0, 1e5, 1e308, math.inf, math.nan]
    ),
)
OTHER_WORDS = [
    "kind",
    "reflect",
    "replicate",
    "circular",
    "constant",
    "latent",
    "pixel",
    "auto",
    "alg",
    "replace",
    "gausian",
]
words = st.sampled_from(
    [*PRESETS, *FILTERS, *SCHEDULES, *FIELDS, *FILTER_PARAMETERS, *SCHEDULE_PARAMETERS, *OTHER_WORDS, ""]
)
plausible = (
    st.floats(0, 1) | st.sampled_from([0.001, 0.5, 1.0, 2.0, 3.0, 10.0, 20.0, 25.0, 1000.0]) | st.integers(0, 16)
)
scalars = st.one_of(st.none(), st.booleans(), numbers, words, st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(words | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


def sections(kinds: dict[str, type], parameters: list[str]) -> st.SearchStrategy[Any]:
    """A filter or schedule as a config gives it: a mapping of a kind's own fields, any mapping, a name, or junk."""
    own = st.one_of(
        st.fixed_dictionaries({"kind": st.just(kind)}, optional={name: near(field) for name, field in fields(cls)})
        for kind, cls in kinds.items()
    )
    kind = st.sampled_from(list(kinds)) | scalars
    mapping = st.fixed_dictionaries(
        {"kind": kind}, optional={name: st.one_of(plausible, numbers, scalars) for name in parameters}
    )
    junk = st.one_of(mapping, mapping.map(lambda section: {**section, "extra": 1}), words, values)
    return st.integers(0, 2).flatmap(lambda pick: own if pick else junk)


def fields(cls: type) -> list[tuple[str, Any]]:
    return [(name, field) for name, field in cls.model_fields.items() if name != "kind"]


def near(field: Any) -> st.SearchStrategy[Any]:
    """Values a field may well accept: its choices, or numbers around the usual bounds."""
    if typing.get_origin(field.annotation) is Literal:
        return mostly(st.sampled_from(typing.get_args(field.annotation)))
    return st.integers(0, 2).flatmap(lambda pick: plausible if pick else numbers)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, any scalar otherwise."""
    return st.integers(0, 9).flatmap(lambda pick: good if pick else scalars)


configs = st.fixed_dictionaries(
    {},
    optional={
        "filter": sections(FILTERS, FILTER_PARAMETERS),
        "schedule": sections(SCHEDULES, SCHEDULE_PARAMETERS),
        "space": mostly(st.sampled_from(["latent", "pixel"])),
        "mode": mostly(st.sampled_from(["auto", "alg", "replace"])),
        "batch_branches": mostly(st.booleans()),
        "preset": mostly(st.sampled_from(PRESETS)),
    },
)
BASE = ALGConfig(filter={"kind": "gaussian", "sigma": 2.0}, schedule="adaptive")
BASE_KEYS = [f"{section}.{name}" for section in ("filter", "schedule") for name in BASE.model_dump()[section]]
dotted_keys = st.one_of(
    st.sampled_from([f"filter.{name}" for name in ["kind", *FILTER_PARAMETERS]]),
    st.sampled_from([f"schedule.{name}" for name in ["kind", *SCHEDULE_PARAMETERS]]),
    st.sampled_from([*FIELDS, "preset.x", "filter.kind.x", "", ".", "filter..factor", "filter."]),
    st.lists(st.sampled_from(["filter", "kind", "a"]), min_size=1, max_size=20).map(".".join),
    st.text(max_size=10),
)
good_keys = st.sampled_from([*BASE_KEYS, "space", "mode", "batch_branches"])
overrides = st.integers(0, 3).flatmap(
    lambda pick: (
        st.dictionaries(good_keys, plausible | st.sampled_from(["latent", "pixel", "alg", False]), max_size=3)
        if pick
        else st.one_of(
            st.dictionaries(dotted_keys, st.one_of(plausible, numbers, scalars, values), max_size=4),
            st.dictionaries(dotted_keys | st.integers() | st.none(), values, max_size=3),
            configs,
            values,
        )
    )
)

# YAML text: dumped configs, mutated with the tokens that matter (aliases, tags, YAML 1.1 and 1.2 numbers), or noise.
TOKENS = [
    *"[]{},:-'\"#?|>\n\t\\\x00\ufeff",
    ": ", "- ", "  ", "&a ", "*a", "&b [*a, *a, *a, *a]", "*b", "<<: ", "---\n", "...\n", "%YAML 1.2\n---\n",
    "!!python/object/apply:os.system ", "!!python/name:os.system", "!!float ", "!!int ", "!!bool ", "!!binary ",
    "!!str ", "!!timestamp ", "!!set ", "!foo ", "4e-1", "1e999", "0x1F", "0o17", "010", "1_000", "1:30", ".inf",
    ".nan", "-.inf", "yes", "~", "null", "2026-01-01", "kind: ", "preset: ", "filter.", "[[[[[[[[[[[[[[[[[[",
]  # fmt: skip
tokens = st.sampled_from(TOKENS) | words | st.text(max_size=4)


@st.composite
def mutated(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """`texts` with up to four edits: a token inserted at a random place, replacing up to three characters."""
    text = draw(texts)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(text)))
        text = text[:start] + draw(tokens) + text[start + draw(st.integers(0, 3)) :]
    return text


def dumped(data: Any, flow: bool) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)


yaml_texts = st.one_of(
    mutated(st.builds(dumped, configs, st.booleans())),
    mutated(st.builds(dumped, values, st.booleans())),
    st.lists(tokens, max_size=30).map("".join),
    st.text(max_size=60),
)
json_texts = mutated(st.builds(json.dumps, configs) | st.builds(json.dumps, values))
files = st.one_of(
    st.tuples(st.sampled_from([".yaml", ".yml"]), yaml_texts.map(str.encode)),
    st.tuples(st.just(".json"), json_texts.map(str.encode)),
    st.tuples(st.sampled_from([".yaml", ".json", ".toml", ""]), st.binary(max_size=40)),
)
assignments = st.lists(
    st.integers(0, 3).flatmap(
        lambda pick: (
            st.tuples(good_keys, st.builds(str, plausible)).map("=".join)
            if pick
            else st.one_of(
                st.tuples(dotted_keys, st.builds(str, numbers) | yaml_texts | st.sampled_from(TOKENS)).map("=".join),
                st.text(max_size=20),
            )
        )
    ),
    max_size=4,
)


def from_kwargs_or_mapping(data: Any) -> ALGConfig:
    """`ALGConfig(**data)` when `data` can be keyword arguments, checked against `model_validate`."""
    if isinstance(data, dict) and all(isinstance(key, str) for key in data):
        outcome = _outcome(lambda: ALGConfig(**data))
        assert outcome == _outcome(lambda: ALGConfig.model_validate(data))
    return ALGConfig.model_validate(data)


def _outcome(make: Callable[[], ALGConfig]) -> Any:
    try:
        return make()
    except (ValidationError, ConfigError) as error:
        return type(error)


def from_file(file: tuple[str, bytes]) -> ALGConfig:
    suffix, content = file
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"config{suffix}"
        path.write_bytes(content)
        return ALGConfig.from_file(path)


@dataclass(frozen=True)
class Route:
    """An entry point and the inputs to fuzz it with."""

    inputs: st.SearchStrategy[Any]
    enter: Callable[[Any], ALGConfig]


ROUTES = {
    "ALGConfig(**kw) / model_validate": Route(configs | values, from_kwargs_or_mapping),
    "resolve_config(mapping)": Route(configs, resolve_config),
    "ALGConfig.from_yaml(text)": Route(yaml_texts, ALGConfig.from_yaml),
    "ALGConfig.from_file(path)": Route(files, from_file),
    "ALGConfig.merge(overrides)": Route(
        st.tuples(st.sampled_from([ALGConfig(), BASE]), overrides), lambda args: args[0].merge(args[1])
    ),
    "--set: parse_overrides + merge": Route(assignments, lambda given: BASE.merge(parse_overrides(given))),
}


def outcome(route: Route, value: Any) -> str:
    """ "valid" or the name of the clean refusal; anything else propagates."""
    try:
        config = route.enter(value)
    except (ValidationError, ConfigError) as error:
        longest = max(len(line) for line in str(error).splitlines())
        assert longest <= LONGEST_MESSAGE_LINE, f"a {longest}-character line in: {str(error)[:2000]}"
        return type(error).__name__
    check_it_works(config)
    return "valid"


def check_it_works(config: ALGConfig) -> None:
    """The filter runs (or refuses this latent's size), the schedule stays in [0, 1], and YAML round-trips."""
    for strength in (0.5, 1.0):
        try:
            filtered = config.filter(LATENT, strength)
        except ConfigError:
            break
        assert filtered.shape == LATENT.shape and torch.isfinite(filtered).all(), config.filter
    for step in range(0, 10, 3):
        strength = config.schedule(StepState.from_step(step, 10, noise_level=1 - step / 9))
        assert 0.0 <= strength <= 1.0, (config.schedule, step, strength)
    assert ALGConfig.from_yaml(config.to_yaml()) == config


def run_route(route: Route, examples: int, *, count_escapes: bool = False) -> Counter[str]:
    """Feed `examples` generated inputs to `route`; count the outcomes (and the escapes, when asked)."""
    counts: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate] if count_escapes else [Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(route.inputs)
    def run(value: Any) -> None:
        try:
            counts[outcome(route, value)] += 1
        except Exception as error:
            if not count_escapes:
                raise
            counts[f"escaped: {type(error).__name__}: {str(error)[:200]}"] += 1

    run()
    return counts


@pytest.mark.parametrize("name", ROUTES)
def test_every_input_validates_or_is_refused_cleanly(name):
    counts = run_route(ROUTES[name], CI_EXAMPLES)
    assert sum(counts.values()) >= CI_EXAMPLES // 2  # hypothesis ran (it may stop early on small input spaces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="generated inputs per route")
    arguments = parser.parse_args()
    print(f"{'route':36} {'inputs':>7} {'valid':>7} {'ValidationError':>16} {'ConfigError':>12} {'escaped':>8}")
    for name, route in ROUTES.items():
        counts = run_route(route, arguments.examples, count_escapes=True)
        escaped = {key: count for key, count in counts.items() if key.startswith("escaped")}
        print(
            f"{name:36} {sum(counts.values()):>7} {counts['valid']:>7} {counts['ValidationError']:>16} "
            f"{counts['ConfigError']:>12} {sum(escaped.values()):>8}"
        )
        for key, count in escaped.items():
            print(f"    {count} x {key}")
    from tests.test_config import billion_laughs

    bomb = billion_laughs()
    start = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        ALGConfig.from_yaml(bomb)
    milliseconds = (time.perf_counter() - start) * 1000
    print(f"alias bomb ({len(bomb.encode())} bytes, 9 levels): refused in {milliseconds:.2f} ms: {refused.value}")


if __name__ == "__main__":
    main()
