"""The one reader (and writer) of config text: YAML and JSON, bounded so that no input can hurt.

Every YAML document alg-guidance reads goes through [`load_yaml`][alg_guidance.config_text.load_yaml]: config
files, [`ALGConfig.from_yaml`][alg_guidance.config.ALGConfig.from_yaml], the values of the CLI's `--set` and the
bundled `presets.yaml`. It reads

- numbers as YAML 1.2 does: `4e-1`, `1E5`, `.5`, `0o17`, `0x1F`, `.inf`, `.nan` (PyYAML alone reads YAML 1.1,
  where `4e-1` is a string and `010` is eight);
- booleans as YAML 1.1 does: `true`/`false`, `yes`/`no`, `on`/`off`, in any case;
- plain values only: mappings, lists, strings, numbers, booleans and null. The tags `!!str`, `!!int`, `!!float`,
  `!!bool`, `!!null`, `!!seq` and `!!map` may be written out; any other tag (`!!python/object`, `!!binary`,
  `!!timestamp`, local tags) is refused; dates and `<<` (YAML 1.1's merge key) stay strings.

Config text is bounded before anything is built from it: at most
[`MAX_CONFIG_SIZE`][alg_guidance.config_text.MAX_CONFIG_SIZE] characters (bytes for a file, refused before the
rest is read), collections nested at most [`MAX_CONFIG_DEPTH`][alg_guidance.config_text.MAX_CONFIG_DEPTH] deep
(JSON too), and, with every alias replaced by the node it refers to, at most
[`MAX_CONFIG_NODES`][alg_guidance.config_text.MAX_CONFIG_NODES] values and `MAX_CONFIG_SIZE` characters of
scalar text, so that an alias bomb is refused while it is being read. Anything that breaks these rules raises
[`ConfigError`][alg_guidance.errors.ConfigError] naming the source, the line and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from .errors import ConfigError, short_repr

MAX_CONFIG_SIZE = 65_536
"""The most characters of config text, or bytes of a config file."""
MAX_CONFIG_DEPTH = 16
"""The deepest nesting of mappings and lists in config text; a config needs 3."""
MAX_CONFIG_NODES = 10_000
"""The most values (scalars, lists and mappings) a YAML document may hold once its aliases are expanded."""
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
"""The file suffixes a config file may have; `.json` files are read as JSON, the others as YAML."""

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z|[-+]?\.(?:inf|Inf|INF)\Z|\.(?:nan|NaN|NAN)\Z"
)
_IMPLICIT_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag in (_TAG + "bool", _TAG + "null")]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in [(_TAG + "int", _INT, "-+0123456789"), (_TAG + "float", _FLOAT, "-+0123456789.")]:
    for _character in _first:
        _IMPLICIT_RESOLVERS.setdefault(_character, []).append((_tag, _pattern))
_ALLOWED_TAGS = "!!str, !!int, !!float, !!bool, !!null, !!seq and !!map"
_PLAIN_VALUES = "mappings, lists, strings, numbers, booleans and null"


def _construct_int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if not _INT.match(text):
        raise ConstructorError(None, None, f"{short_repr(text)} is not a YAML 1.2 integer", node.start_mark)
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
    try:
        return sign * int(digits[2:] if base != 10 else digits, base)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise ConstructorError(None, None, f"the integer {short_repr(text)} is too long", node.start_mark) from None


def _construct_float(loader: SafeConstructor, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    if not _FLOAT.match(text):
        raise ConstructorError(None, None, f"{short_repr(text)} is not a YAML 1.2 number", node.start_mark)
    return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))


def _construct_bool(loader: SafeConstructor, node: yaml.ScalarNode) -> bool:
    text = loader.construct_scalar(node)
    if text.lower() not in loader.bool_values:
        raise ConstructorError(None, None, f"{short_repr(text)} is not a YAML boolean", node.start_mark)
    return loader.bool_values[text.lower()]


def _construct_other(loader: SafeConstructor, node: yaml.Node) -> Any:
    tag = "!!" + node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else node.tag
    raise ConstructorError(
        None,
        None,
        f"the tag {short_repr(tag)} is not allowed: a config holds {_PLAIN_VALUES}, tagged at most {_ALLOWED_TAGS}",
        node.start_mark,
    )


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers, plain values only, and bounded depth and alias expansion."""

    yaml_implicit_resolvers = _IMPLICIT_RESOLVERS
    yaml_constructors = {  # noqa: RUF012 (PyYAML's class-level table)
        _TAG + "null": SafeConstructor.construct_yaml_null,
        _TAG + "bool": _construct_bool,
        _TAG + "int": _construct_int,
        _TAG + "float": _construct_float,
        _TAG + "str": SafeConstructor.construct_yaml_str,
        _TAG + "seq": SafeConstructor.construct_yaml_seq,
        _TAG + "map": SafeConstructor.construct_yaml_map,
        None: _construct_other,
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._characters = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # per anchor: the nodes and characters an alias repeats

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose as PyYAML does, counting nesting and values (each alias as the whole node it repeats)."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._sizes:
                raise ComposerError(None, None, "an alias may not refer to a node that contains it", event.start_mark)
            node = super().compose_node(parent, index)  # raises for an undefined alias
            self._count(*self._sizes[event.anchor], event.start_mark)
            return node
        nodes, characters = self._nodes, self._characters
        is_collection = isinstance(event, yaml.CollectionStartEvent)
        if is_collection and self._depth == MAX_CONFIG_DEPTH:
            raise ComposerError(
                None, None, f"mappings and lists may be nested at most {MAX_CONFIG_DEPTH} deep", event.start_mark
            )
        self._count(1, 0 if is_collection else len(event.value), event.start_mark)
        self._depth += is_collection
        node = super().compose_node(parent, index)
        self._depth -= is_collection
        if event.anchor is not None:
            self._sizes[event.anchor] = (self._nodes - nodes, self._characters - characters)
        return node

    def _count(self, nodes: int, characters: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        self._characters += characters
        if self._nodes > MAX_CONFIG_NODES or self._characters > MAX_CONFIG_SIZE:
            raise ComposerError(
                None,
                None,
                f"with its aliases expanded, a config may hold at most {MAX_CONFIG_NODES} values and "
                f"{MAX_CONFIG_SIZE} characters of text; this one holds more",
                mark,
            )


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting every string that the loader would read as something else."""

    yaml_implicit_resolvers = _IMPLICIT_RESOLVERS


def load_yaml(text: str, source: str = "<config>") -> Any:
    """The value of a YAML document, read within the bounds above.

    Args:
        text: One YAML document.
        source: What the text is, for error messages: a file name, or `--set filter.factor`.

    Raises:
        ConfigError: The text is too long, deeper or more aliased than allowed, malformed, or uses a tag other
            than the standard ones; the message gives the source, line and column.

    Examples:
        >>> load_yaml("{filter: {kind: downsample, factor: 4e-1}, batch_branches: no}")
        {'filter': {'kind': 'downsample', 'factor': 0.4}, 'batch_branches': False}
        >>> load_yaml("[010, 0o10, 0x10, 1_000, 2026-01-01]")
        [10, 8, 16, '1_000', '2026-01-01']
    """
    _check_size(len(text), "characters", source)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError(f"{where}: {_clip(problem)}") from None
    except yaml.YAMLError as error:  # the reader's refusal of a control character
        raise ConfigError(f"{source}: {_clip(str(error))}") from None


def load_json(text: str, source: str = "<config>") -> Any:
    """The value of a JSON document, within the same size and depth bounds as YAML.

    Raises:
        ConfigError: The text is too long, nested too deep, or not JSON; the message gives the line.

    Examples:
        >>> load_json('{"filter": {"kind": "downsample", "factor": 4e-1}}')
        {'filter': {'kind': 'downsample', 'factor': 0.4}}
    """
    _check_size(len(text), "characters", source)
    _check_json_depth(text, source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source}, line {error.lineno}, column {error.colno}: {error.msg}") from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise ConfigError(f"{source}: {_clip(str(error))}") from None


def dump_yaml(data: Any) -> str:
    """`data` as a YAML document that [`load_yaml`][alg_guidance.config_text.load_yaml] reads back unchanged.

    Examples:
        >>> print(dump_yaml({"kind": "1e5", "factor": 1e-05}), end="")
        kind: '1e5'
        factor: 1.0e-05
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def config_format(path: str | os.PathLike[str]) -> str:
    """`"json"` or `"yaml"`, by the suffix of `path`.

    Raises:
        ConfigError: The suffix is none of `.yaml`, `.yml` and `.json`.
    """
    suffix = Path(path).suffix
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"config file {short_repr(str(path))} must end in one of {', '.join(CONFIG_SUFFIXES)}")
    return "json" if suffix == ".json" else "yaml"


def read_config_file(path: str | os.PathLike[str]) -> Any:
    """The value of a `.yaml`, `.yml` or `.json` file, read within the bounds above.

    Raises:
        ConfigError: The file has another suffix, cannot be read, is not UTF-8, is larger than
            `MAX_CONFIG_SIZE` bytes (found without reading the rest), or its text breaks the rules above.
    """
    file_format = config_format(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_SIZE + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {short_repr(str(path))}: {error.strerror or error}") from None
    _check_size(len(data), "bytes", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start} is {data[error.start]:#04x})") from None
    return load_json(text, str(path)) if file_format == "json" else load_yaml(text, str(path))


def _check_size(size: int, unit: str, source: str) -> None:
    if size > MAX_CONFIG_SIZE:
        raise ConfigError(f"{source} is longer than the {MAX_CONFIG_SIZE} {unit} a config may have")


def _check_json_depth(text: str, source: str) -> None:
    """Refuse JSON nested deeper than `MAX_CONFIG_DEPTH` before Python's recursive parser sees it."""
    depth, in_string, escaped = 0, False, False
    for index, character in enumerate(text):
        if escaped:
            escaped = False
        elif in_string:
            escaped = character == "\\"
            in_string = character != '"'
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                line = text.count("\n", 0, index) + 1
                raise ConfigError(
                    f"{source}, line {line}: objects and arrays may be nested at most {MAX_CONFIG_DEPTH} deep"
                )
        elif character in "]}":
            depth -= 1


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
