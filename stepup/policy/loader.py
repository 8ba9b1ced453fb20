"""Reading and writing policy files (CONTRACT §3).

YAML is composed safely into nodes and turned into plain data by hand, so no
tag is ever constructed into an object, duplicate keys are caught at every
depth and every value keeps its line. JSON is parsed by :mod:`json` and its
lines are found by a small tokenizer. Validation then collects *every*
problem of a file as a :class:`PolicyError` naming file, line and field.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import bisect
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stepup.policy.model import (
    FACTOR_KINDS,
    NUMBER_MAX_LENGTH,
    PolicyError,
    PolicyFile,
    PolicySpec,
    PolicyTest,
    as_number,
)

__all__ = [
    "HTTP_METHODS",
    "MAX_NAME_LENGTH",
    "POLICY_KEYS",
    "dump_policies",
    "load_files",
    "load_text",
    "validate_policy",
    "validate_test",
]

Format = Literal["yaml", "json"]
FieldPath = tuple[str | int, ...]
"""Where a value sits in a file: ``("policies", 2, "when", "attrs")``."""

Check = Callable[["_Ctx", FieldPath, object], Any]
"""Validates one value at a path, reports problems to the context, returns the normalised value."""

TOP_KEYS = ("version", "policies", "tests")
POLICY_KEYS = (
    "id",
    "description",
    "match",
    "when",
    "decision",
    "max_age",
    "factors",
    "enabled",
    "mode",
)
MATCH_KEYS = ("actions", "urls", "methods")
TEST_KEYS = ("name", "input", "expect")
EXPECT_KEYS = ("decision", "policies")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
DECISIONS = ("step_up", "deny")
OUTCOMES = ("allow", "step_up", "deny")
MODES = ("enforce", "shadow")
COMPARISONS = ("gt", "gte", "lt", "lte")
MAX_NAME_LENGTH = 200
"""The longest action or URL name (or pattern) in a file, ``api-status`` query or ``api-decide`` input."""
MAX_AGE_LIMIT = 2**31 - 1
"""The largest ``max_age`` (about 68 years): what every database's ``PositiveIntegerField`` holds."""

_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
RESERVED_PREFIX = "stepup."
"""Ids that built-in policies (and the uncovered-action default) use; files may not."""
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.:*-]")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_PROSE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # tab and newline are prose

_ALIASES_UNSUPPORTED = (
    "YAML anchors and aliases are not supported in policy files; write each value out in full"
)


# ---------------------------------------------------------------------------
# Locating values: plain data plus the line of every key and list item.


@dataclass
class _Lines:
    """Line numbers (1-based) by path; a path without its own line takes its parent's."""

    at: dict[FieldPath, int] = field(default_factory=dict)
    duplicates: dict[FieldPath, int] = field(default_factory=dict)
    default: int | None = None

    def line(self, path: FieldPath) -> int | None:
        while path not in self.at:
            if not path:
                return self.default
            path = path[:-1]
        return self.at[path]

    def key(self, path: FieldPath, line: int) -> None:
        """Record a mapping key; a second occurrence is remembered as a duplicate."""
        if path in self.at:
            self.duplicates.setdefault(path, line)
        else:
            self.at[path] = line


@dataclass
class _Located:
    data: object
    lines: _Lines
    problems: list[tuple[FieldPath, int | None, str]] = field(default_factory=list)
    unreadable: set[FieldPath] = field(default_factory=set)
    """Values already reported as unreadable; validation stays quiet about them."""


class _ParseError(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _SafeComposer(yaml.SafeLoader):
    """Composes nodes only; refuses anchors and aliases (no alias bombs)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, _ALIASES_UNSUPPORTED, event.start_mark)
        return super().compose_node(parent, index)


_TAG = "tag:yaml.org,2002:"
_AS_TEXT = {f"{_TAG}str", f"{_TAG}timestamp"}  # a date stays the text that was written
_CONSTRUCTED = {f"{_TAG}int", f"{_TAG}float", f"{_TAG}bool"}
_YAML_1_2_BOOLEANS = {"true", "True", "TRUE", "false", "False", "FALSE"}
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_KEY_TAGS = _AS_TEXT | _CONSTRUCTED | {f"{_TAG}null"}


def _duplicate_key(key: str, first_line: int | None) -> str:
    return (
        f"duplicate key {key!r} (first given on line {first_line}); "
        "a key may appear only once in a mapping — remove one"
    )


def _tag_problem(tag: str) -> str:
    shown = tag.replace(_TAG, "!!", 1)
    if tag == f"{_TAG}merge":
        return "YAML merge keys ('<<') are not supported in policy files; write the keys out"
    return (
        f"YAML tag {shown!r} is not allowed; policy files hold only plain strings, "
        "numbers, booleans, lists and mappings — remove the tag"
    )


class _NodeReader:
    """Turns composed YAML nodes into plain data, recording lines and problems."""

    def __init__(self, loader: yaml.SafeLoader, found: _Located) -> None:
        self.loader = loader
        self.found = found

    def problem(self, path: FieldPath, node: Node, message: str) -> None:
        self.found.problems.append((path, node.start_mark.line + 1, message))

    def unreadable(self, path: FieldPath, node: Node, message: str) -> None:
        self.problem(path, node, message)
        self.found.unreadable.add(path)

    def read(self, node: Node, path: FieldPath) -> object:
        self.found.lines.at.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return self.sequence(node, path)
        assert isinstance(node, ScalarNode)
        return self.scalar(node, path)

    def mapping(self, node: MappingNode, path: FieldPath) -> dict[str, object] | None:
        if node.tag != f"{_TAG}map":
            self.unreadable(path, node, _tag_problem(node.tag))
            return None
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in result:
                first = self.found.lines.at[(*path, key)]
                self.problem((*path, key), key_node, _duplicate_key(key, first))
                continue
            self.found.lines.key((*path, key), key_node.start_mark.line + 1)
            result[key] = self.read(value_node, (*path, key))
        return result

    def key(self, node: Node, path: FieldPath) -> str | None:
        if node.tag not in _KEY_TAGS | {f"{_TAG}map", f"{_TAG}seq"}:
            self.problem(path, node, _tag_problem(node.tag))
            return None
        if not isinstance(node, ScalarNode):
            self.problem(path, node, "mapping keys must be plain strings, not lists or mappings")
            return None
        return str(node.value)

    def sequence(self, node: SequenceNode, path: FieldPath) -> list[object] | None:
        if node.tag != f"{_TAG}seq":
            self.unreadable(path, node, _tag_problem(node.tag))
            return None
        return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]

    def scalar(self, node: ScalarNode, path: FieldPath) -> object:
        if node.tag in _AS_TEXT:
            return str(node.value)
        if node.tag == f"{_TAG}null":
            return None
        if node.tag not in _CONSTRUCTED:
            self.unreadable(path, node, _tag_problem(node.tag))
            return None
        problem = _yaml_1_1_only(node)
        if problem is not None:
            self.unreadable(path, node, problem)
            return None
        try:
            return self.loader.construct_object(node)
        except ValueError as exc:
            self.unreadable(path, node, f"cannot read {node.value!r}: {exc}")
            return None


def _yaml_1_1_only(node: ScalarNode) -> str | None:
    """Why a plain scalar PyYAML reads as YAML 1.1 would read otherwise in YAML 1.2, if it would."""
    text = node.value
    if ":" in text:
        return (
            f"{text!r} reads as a base-60 number in YAML 1.1; quote it if it is text, or write the number out"
        )
    if node.tag == f"{_TAG}bool" and text not in _YAML_1_2_BOOLEANS:
        return (
            f"{text!r} is a boolean in YAML 1.1 but text in YAML 1.2; write true or false, "
            "or quote it if it is text"
        )
    if (node.tag == f"{_TAG}int" and not _PLAIN_INT.fullmatch(text)) or (
        node.tag == f"{_TAG}float" and "_" in text
    ):
        return (
            f"{text!r} reads differently in YAML 1.1 and 1.2; write the number in plain decimal digits "
            "(no leading zeros, underscores or 0x/0b/0o prefixes), or quote it if it is text"
        )
    return None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    if exc.problem == _ALIASES_UNSUPPORTED:
        return _ALIASES_UNSUPPORTED
    where = f" (column {exc.problem_mark.column + 1})" if exc.problem_mark else ""
    return "invalid YAML: " + ", ".join(p for p in (exc.context, exc.problem) if p) + where


def _locate_yaml(text: str) -> _Located:
    try:
        return _read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _ParseError(mark.line + 1 if mark else None, _yaml_message(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise _ParseError(
            line, f"invalid character {chr(exc.character)!r} in YAML ({exc.reason}); remove it"
        ) from None
    except yaml.YAMLError as exc:
        raise _ParseError(None, f"invalid YAML: {exc}") from None


def _read_yaml(text: str) -> _Located:
    loader = _SafeComposer(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _ParseError(1, _EMPTY_FILE)
        found = _Located(None, _Lines(default=1))
        found.data = _NodeReader(loader, found).read(node, ())
        return found
    finally:
        loader.dispose()


class _JsonObject(dict[str, object]):
    """A JSON object that remembers the keys it saw more than once (the first value wins)."""

    duplicates: list[str]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, object]]) -> _JsonObject:
        obj = cls()
        obj.duplicates = []
        for key, value in pairs:
            if key in obj:
                obj.duplicates.append(key)
            else:
                obj[key] = value
        return obj


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


@dataclass
class _JsonFrame:
    path: FieldPath
    is_object: bool
    index: int = 0
    key: str | None = None


def _json_lines(text: str) -> _Lines:
    """The line of every key and array item of an already-valid JSON text."""
    found = _Lines(default=1)
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    stack: list[_JsonFrame] = []
    for match in _JSON_TOKEN.finditer(text):
        token, line = match.group(), bisect.bisect_right(starts, match.start())
        top = stack[-1] if stack else None
        if token in (":", "}", "]", ","):
            if token in ("}", "]"):
                stack.pop()
            elif token == "," and top is not None:
                top.index, top.key = top.index + 1, None
            continue
        if top is not None and top.is_object and top.key is None:
            top.key = str(json.loads(token))
            found.key((*top.path, top.key), line)
            continue
        path = _json_value_path(top)
        found.at.setdefault(path, line)
        if token in ("{", "["):
            stack.append(_JsonFrame(path, is_object=token == "{"))
    return found


def _json_value_path(container: _JsonFrame | None) -> FieldPath:
    if container is None:
        return ()
    if container.is_object and container.key is not None:
        return (*container.path, container.key)
    return (*container.path, container.index)


def _plain_json(value: object, path: FieldPath, found: _Located) -> object:
    if isinstance(value, _JsonObject):
        for key in value.duplicates:
            at = (*path, key)
            message = _duplicate_key(key, found.lines.line(at))
            found.problems.append((at, found.lines.duplicates.get(at), message))
        return {k: _plain_json(v, (*path, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v, (*path, i), found) for i, v in enumerate(value)]
    return value


def _locate_json(text: str) -> _Located:
    try:
        data = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as exc:
        raise _ParseError(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise _ParseError(None, f"invalid JSON: {exc}") from None
    found = _Located(None, _json_lines(text))
    found.data = _plain_json(data, (), found)
    return found


_EMPTY_FILE = "the file is empty; a policy file starts with 'version: 1'"


def _locate(text: str, fmt: Format) -> _Located:
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _ParseError(1, _EMPTY_FILE)
    try:
        return _locate_json(text) if fmt == "json" else _locate_yaml(text)
    except RecursionError:
        raise _ParseError(None, "the file is nested too deeply to be a policy file") from None


# ---------------------------------------------------------------------------
# Validation helpers.


@dataclass
class _Ctx:
    source: str
    lines: _Lines
    errors: list[PolicyError] = field(default_factory=list)
    quiet: set[FieldPath] = field(default_factory=set)

    def error(self, path: FieldPath, message: str, line: int | None = None) -> None:
        if any(path[:n] in self.quiet for n in range(len(path) + 1)):
            return
        line = self.lines.line(path) if line is None else line
        self.errors.append(PolicyError(self.source, line, _field_name(path), message))


def _field_name(path: FieldPath) -> str:
    """``("policies", 2, "when")`` -> ``"policies[2].when"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {_shorten(repr(value))}"
    if isinstance(value, str):
        return f"the string {_shorten(value)!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _unknown(kind: str, word: str, choices: Sequence[str]) -> str:
    return f"unknown {kind} {word!r}; allowed {kind}s: {', '.join(choices)}{_suggest(word, choices)}"


def _mapping(ctx: _Ctx, path: FieldPath, value: object, example: str) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    ctx.error(path, f"expected a mapping, e.g. {example}; got {_describe(value)}")
    return None


def _filled_mapping(
    ctx: _Ctx, path: FieldPath, value: object, example: str, choices: Collection[str]
) -> Mapping[str, Any] | None:
    """A mapping that must hold something: ``roles: {}`` or an empty ``when:`` is an error."""
    data = _mapping(ctx, path, value, example)
    if data is not None and not data:
        ctx.error(
            path,
            f"{path[-1]} is empty; give {' / '.join(choices)} (e.g. {example}) or remove it",
        )
        return None
    return data


def _keys(
    ctx: _Ctx,
    path: FieldPath,
    data: Mapping[str, Any],
    allowed: Sequence[str],
    required: Mapping[str, str] | None = None,
) -> None:
    """Unknown keys are errors; ``required`` maps each required key to a hint."""
    for key in data:
        if key not in allowed:
            ctx.error((*path, key), _unknown("key", key, allowed))
    for key, hint in (required or {}).items():
        if key not in data:
            ctx.error((*path, key), f"missing required key {key!r}: {hint}")


def _opt(ctx: _Ctx, path: FieldPath, data: Mapping[str, Any], key: str, check: Check, default: Any) -> Any:
    return check(ctx, (*path, key), data[key]) if key in data else default


def _list(
    ctx: _Ctx, path: FieldPath, value: object, item: Check, example: str, *, empty_ok: bool = False
) -> list[Any] | None:
    if not isinstance(value, list | tuple):
        ctx.error(path, f"expected a list, e.g. {example}; got {_describe(value)}")
        return None
    if not value and not empty_ok:
        ctx.error(path, f"the list is empty; give at least one item (e.g. {example}) or remove it")
        return None
    return [item(ctx, (*path, i), v) for i, v in enumerate(value)]


def _text(ctx: _Ctx, path: FieldPath, value: object, *, prose: bool = False) -> str | None:
    """A string without control characters (``prose`` may hold tabs and line breaks) or lone surrogates."""
    if not isinstance(value, str):
        ctx.error(path, f"expected a string; got {_describe(value)} — quote it")
        return None
    bad = (_CONTROL_IN_PROSE if prose else _CONTROL).search(value)
    if bad is None:
        return value
    code = ord(bad.group())
    kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "the control character"
    hint = "; a description may hold tabs and line breaks, no other control characters" if prose else ""
    ctx.error(path, f"contains {kind} U+{code:04X} (character {bad.start() + 1}); remove it{hint}")
    return None


def _description(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    return _text(ctx, path, value, prose=True)


def _name(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _text(ctx, path, value)
    if text == "":
        ctx.error(path, "expected a non-empty string")
        return None
    return text


def _action_or_url(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    """A name the engine matches against patterns: bounded, so matching stays cheap."""
    text = _name(ctx, path, value)
    if text is not None and len(text) > MAX_NAME_LENGTH:
        ctx.error(path, f"is {len(text)} characters long; names are at most {MAX_NAME_LENGTH} characters")
        return None
    return text


def _choice(choices: Sequence[str], kind: str) -> Check:
    def check(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        word = value if isinstance(value, str) else _describe(value)
        ctx.error(path, _unknown(kind, word, choices))
        return None

    return check


def _bool(ctx: _Ctx, path: FieldPath, value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    ctx.error(path, f"expected true or false; got {_describe(value)}")
    return None


@dataclass(frozen=True)
class _Number:
    """A numeric operand: what it must look like, and whether it may be negative / fractional."""

    expected: str
    integer: bool = False
    non_negative: bool = False
    decimal_strings: bool = False
    maximum: int | None = None

    def __call__(self, ctx: _Ctx, path: FieldPath, value: object) -> int | float | None:
        number = _decimal(value) if self.decimal_strings and isinstance(value, str) else value
        if not _is_number(number) or (self.integer and isinstance(number, float)):
            ctx.error(path, f"expected {self.expected}; got {_describe(value)}")
            return None
        assert isinstance(number, int | float)
        if self.non_negative and number < 0:
            ctx.error(path, f"must not be negative (got {number}); expected {self.expected}")
            return None
        if self.maximum is not None and number > self.maximum:
            ctx.error(
                path,
                f"must be at most {self.maximum} (got {_shorten(str(number))}); expected {self.expected}",
            )
            return None
        return number


def _is_number(value: object) -> bool:
    """A finite int or float that a float can hold (the engine and the tests compute with floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the largest float
        return False


def _decimal(text: str) -> int | float | str:
    """``"1000"`` -> 1000, ``"12.50"`` -> 12.5: what the engine reads as a number; else ``text``."""
    number = as_number(text)
    if number is None:
        return text
    return number if isinstance(number, int) else float(number)


_MAX_AGE = _Number(
    "a whole number of seconds, 0 or more (e.g. 300; 0 = verify for this one request)",
    integer=True,
    non_negative=True,
    maximum=MAX_AGE_LIMIT,
)
_SECONDS = _Number("a number of seconds, 0 or more (e.g. 3600)", non_negative=True)
_ATTR_NUMBER = _Number(
    "a number, or a string holding a decimal number in ASCII digits, at most "
    f'{NUMBER_MAX_LENGTH} characters (e.g. 1000 or "12.50")',
    decimal_strings=True,
)


# ---------------------------------------------------------------------------
# Checks for single items.


def _glob_item(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _action_or_url(ctx, path, value)
    if not text:
        return None
    bad = sorted(set(_NAME_CHARS.sub("", text)))
    if bad:
        ctx.error(
            path,
            f"{text!r} contains {', '.join(map(repr, bad))}; names use only letters, digits and "
            "'_ . : -', and '*' is the only glob character (it matches any run of characters)",
        )
        return None
    return text


def _method_item(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _name(ctx, path, value)
    if text is None:
        return None
    if text.upper() not in HTTP_METHODS:
        ctx.error(path, _unknown("HTTP method", text, HTTP_METHODS))
        return None
    return text.upper()


def _factor_item(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _name(ctx, path, value)
    if text is not None and text not in FACTOR_KINDS:
        ctx.error(path, _unknown("factor kind", text, FACTOR_KINDS))
        return None
    return text


def _cidr_item(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _name(ctx, path, value)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            ctx.error(path, f"{text!r} is not an IP network: {exc}; write a CIDR like 10.0.0.0/8")
            return None
        ctx.error(path, f"{text!r} has host bits set; did you mean {str(loose)!r}?")
        return None


def _ip_item(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _name(ctx, path, value)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        ctx.error(path, f"{text!r} is not an IP address; write one like 203.0.113.9 or 2001:db8::1")
        return None


def _scalar_item(ctx: _Ctx, path: FieldPath, value: object) -> object:
    if isinstance(value, str):
        return _text(ctx, path, value)
    if isinstance(value, bool) or _is_number(value):
        return value
    ctx.error(path, f"expected a string, number or boolean; got {_describe(value)}")
    return None


# ---------------------------------------------------------------------------
# Lists and conditions.


def _globs(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _glob_item, "[billing.update, billing.*]", empty_ok=True)


def _methods(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    methods = _list(ctx, path, value, _method_item, "[POST, PUT, PATCH, DELETE]")
    if methods is None:
        return None
    if "HEAD" in methods:
        # Django answers HEAD with the GET view, so the engine matches HEAD as GET.
        ctx.error(
            path, "HEAD requests are matched as GET (Django serves them with the GET view); list GET instead"
        )
        return None
    return list(dict.fromkeys(methods))


def _factors(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _factor_item, f"[{', '.join(FACTOR_KINDS[:2])}]")


def _roles(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _name, "[finance]")


def _cidrs(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _cidr_item, '["10.0.0.0/8"]')


def _scalars(ctx: _Ctx, path: FieldPath, value: object) -> list[object] | None:
    return _list(ctx, path, value, _scalar_item, "[EUR, USD]")


@dataclass(frozen=True)
class _Condition:
    """A mapping of operators to operands, e.g. ``{any_of: [finance]}``."""

    operators: Mapping[str, Check]
    example: str

    def __call__(self, ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
        data = _filled_mapping(ctx, path, value, self.example, self.operators)
        if data is None:
            return None
        result: dict[str, Any] = {}
        for op, operand in data.items():
            check = self.operators.get(op)
            if check is None:
                ctx.error((*path, op), _unknown("operator", op, list(self.operators)))
            else:
                result[op] = check(ctx, (*path, op), operand)
        return result


_ROLES = _Condition(dict.fromkeys(("any_of", "all_of", "none_of"), _roles), "{any_of: [finance]}")
_ORIGIN = _Condition(dict.fromkeys(("in", "not_in"), _cidrs), '{not_in: ["10.0.0.0/8"]}')
_SESSION_AGE = _Condition(dict.fromkeys(COMPARISONS, _SECONDS), "{gt: 3600}")
_ATTR = _Condition(
    {
        "eq": _scalar_item,
        "ne": _scalar_item,
        **dict.fromkeys(COMPARISONS, _ATTR_NUMBER),
        "in": _scalars,
        "not_in": _scalars,
    },
    "{gt: 1000}",
)


def _attrs(ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = _filled_mapping(ctx, path, value, "{amount: {gt: 1000}}", ["an attribute"])
    if data is None:
        return None
    result: dict[str, Any] = {}
    for name, condition in data.items():
        if _ATTR_NAME.fullmatch(name):
            result[name] = _ATTR(ctx, (*path, name), condition)
        else:
            ctx.error(
                (*path, name),
                f"attribute name {name!r} must match {_ATTR_NAME.pattern} (e.g. amount, order.total)",
            )
    return result


_WHEN: dict[str, Check] = {
    "roles": _ROLES,
    "origin": _ORIGIN,
    "session_age": _SESSION_AGE,
    "attrs": _attrs,
}


def _when(ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = _filled_mapping(ctx, path, value, "{roles: {any_of: [finance]}}", _WHEN)
    if data is None:
        return None
    result: dict[str, Any] = {}
    for key, condition in data.items():
        check = _WHEN.get(key)
        if check is not None:
            result[key] = check(ctx, (*path, key), condition)
            continue
        hint = ""
        if isinstance(condition, Mapping) and set(condition) <= set(_ATTR.operators):
            hint = f" (to test a transaction attribute, put it under attrs: attrs.{key})"
        ctx.error((*path, key), _unknown("condition", key, list(_WHEN)) + hint)
    return result


# ---------------------------------------------------------------------------
# Policies.

_POLICY_REQUIRED = {
    "id": "a unique id such as billing-update",
    "match": "what the policy covers, e.g. {actions: [billing.update]}",
    "decision": "step_up or deny",
}


@dataclass(frozen=True)
class _Match:
    actions: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


def _policy_id(ctx: _Ctx, path: FieldPath, value: object) -> str | None:
    text = _text(ctx, path, value)
    if text is not None and text.startswith(RESERVED_PREFIX):
        ctx.error(path, f"ids starting with {RESERVED_PREFIX!r} are reserved for stepup's built-in policies")
        return None
    if text is None or _ID.fullmatch(text):
        return text
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    hint = f"; did you mean {slug!r}?" if slug and _ID.fullmatch(slug) else ""
    ctx.error(
        path,
        f"policy id {text!r} must be lower-case letters, digits, '.', '_' and '-', "
        f"starting with a letter or digit{hint}",
    )
    return None


def _match(ctx: _Ctx, path: FieldPath, value: object) -> _Match | None:
    data = _mapping(ctx, path, value, "{actions: [billing.update]}")
    if data is None:
        return None
    _keys(ctx, path, data, MATCH_KEYS)
    actions = _opt(ctx, path, data, "actions", _globs, [])
    urls = _opt(ctx, path, data, "urls", _globs, [])
    methods = _opt(ctx, path, data, "methods", _methods, [])
    if actions == [] and urls == []:
        ctx.error(
            path,
            "match needs at least one action or URL name, e.g. actions: [billing.update] "
            'or urls: ["admin:auth_user_change"]',
        )
        return None
    return _Match(tuple(actions or ()), tuple(urls or ()), tuple(methods or ()))


def _decision_terms(
    ctx: _Ctx, path: FieldPath, data: Mapping[str, Any], decision: str | None
) -> tuple[int | None, tuple[str, ...]]:
    """``max_age`` and ``factors``: required / optional for step_up, forbidden for deny."""
    if decision == "deny":
        for key in ("max_age", "factors"):
            if key in data:
                ctx.error(
                    (*path, key),
                    f"{key} is only for decision: step_up; remove it from this deny policy",
                )
        return None, ()
    if decision == "step_up" and "max_age" not in data:
        ctx.error(
            (*path, "max_age"),
            "missing required key 'max_age' for decision: step_up: seconds since the last "
            "verification, e.g. max_age: 300 (0 = verify for this one request)",
        )
    max_age = _opt(ctx, path, data, "max_age", _MAX_AGE, None)
    factors = _opt(ctx, path, data, "factors", _factors, ())
    return max_age, tuple(factors or ())


def _policy(ctx: _Ctx, path: FieldPath, value: object) -> PolicySpec | None:
    data = _mapping(ctx, path, value, "{id: billing-update, match: ..., decision: step_up}")
    if data is None:
        return None
    before = len(ctx.errors)
    _keys(ctx, path, data, POLICY_KEYS, _POLICY_REQUIRED)
    policy_id = _opt(ctx, path, data, "id", _policy_id, None)
    description = _opt(ctx, path, data, "description", _description, "")
    match = _opt(ctx, path, data, "match", _match, None)
    when = _opt(ctx, path, data, "when", _when, {})
    decision = _opt(ctx, path, data, "decision", _choice(DECISIONS, "decision"), None)
    max_age, factors = _decision_terms(ctx, path, data, decision)
    enabled = _opt(ctx, path, data, "enabled", _bool, True)
    mode = _opt(ctx, path, data, "mode", _choice(MODES, "mode"), "enforce")
    if len(ctx.errors) > before:
        return None
    return PolicySpec(
        id=policy_id,
        description=description,
        actions=match.actions,
        urls=match.urls,
        methods=match.methods,
        when=when,
        decision=decision,
        max_age=max_age,
        factors=factors,
        enabled=enabled,
        mode=mode,
        source=ctx.source,
        line=ctx.lines.line(path),
    )


# ---------------------------------------------------------------------------
# Policy tests.


def _verified(ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = _mapping(ctx, path, value, "{totp: 900}")
    if data is None:
        return None
    result: dict[str, Any] = {}
    for kind, seconds in data.items():
        if kind not in FACTOR_KINDS:
            ctx.error((*path, kind), _unknown("factor kind", kind, FACTOR_KINDS))
        else:
            result[kind] = _SECONDS(ctx, (*path, kind), seconds)
    return result


def _input_attrs(ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = _mapping(ctx, path, value, "{amount: 5000}")
    return None if data is None else dict(data)


def _input_roles(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _name, "[authenticated, finance]", empty_ok=True)


_INPUT: dict[str, Check] = {
    "action": _action_or_url,
    "url": _action_or_url,
    "method": _method_item,
    "roles": _input_roles,
    "origin": _ip_item,
    "session_age": _SECONDS,
    "verified": _verified,
    "attrs": _input_attrs,
}


def _test_input(ctx: _Ctx, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = _mapping(ctx, path, value, "{action: billing.update, method: POST}")
    if data is None:
        return None
    _keys(ctx, path, data, list(_INPUT))
    if "action" not in data and "url" not in data:
        ctx.error(path, "give the request's action or url (or both), e.g. action: billing.update")
    result: dict[str, Any] = {"method": "GET"}
    result.update({k: check(ctx, (*path, k), data[k]) for k, check in _INPUT.items() if k in data})
    return result


_PolicyRef = tuple[str, FieldPath]


def _expect(ctx: _Ctx, path: FieldPath, value: object) -> tuple[str | None, tuple[str, ...] | None]:
    data = _mapping(ctx, path, value, "{decision: step_up, policies: [billing-update]}")
    if data is None:
        return None, None
    _keys(ctx, path, data, EXPECT_KEYS, {"decision": "allow, step_up or deny"})
    decision = _opt(ctx, path, data, "decision", _choice(OUTCOMES, "decision"), None)
    policies = _opt(ctx, path, data, "policies", _expected_ids, None)
    return decision, None if policies is None else tuple(policies)


def _expected_ids(ctx: _Ctx, path: FieldPath, value: object) -> list[str] | None:
    return _list(ctx, path, value, _name, "[billing-update]", empty_ok=True)


def _test(ctx: _Ctx, path: FieldPath, value: object) -> tuple[PolicyTest | None, list[_PolicyRef]]:
    """One ``tests:`` entry, and the policy ids its ``expect.policies`` names."""
    data = _mapping(ctx, path, value, "{name: ..., input: {...}, expect: {decision: allow}}")
    if data is None:
        return None, []
    before = len(ctx.errors)
    _keys(
        ctx,
        path,
        data,
        TEST_KEYS,
        {
            "name": "what the test checks, in words",
            "input": "the request, e.g. {action: billing.update, method: POST}",
            "expect": "the outcome, e.g. {decision: step_up}",
        },
    )
    name = _opt(ctx, path, data, "name", _name, None)
    inp = _opt(ctx, path, data, "input", _test_input, None)
    decision, policies = _opt(ctx, path, data, "expect", _expect, (None, None))
    refs = [(pid, (*path, "expect", "policies", i)) for i, pid in enumerate(policies or ())]
    if len(ctx.errors) > before:
        return None, refs
    test = PolicyTest(name, inp, decision, policies, source=ctx.source, line=ctx.lines.line(path))
    return test, refs


def _check_refs(ctx: _Ctx, refs: Sequence[_PolicyRef], known: Collection[str]) -> None:
    for policy_id, path in refs:
        if policy_id not in known:
            ctx.error(
                path,
                f"no policy has id {policy_id!r}{_suggest(policy_id, known)}; "
                "expect.policies names ids of policies in the loaded files",
            )


# ---------------------------------------------------------------------------
# Whole files.


@dataclass
class _Parsed:
    """One file, validated on its own; cross-file checks happen in :func:`_merge`."""

    ctx: _Ctx
    policies: list[PolicySpec] = field(default_factory=list)
    tests: list[PolicyTest] = field(default_factory=list)
    ids: list[tuple[str, FieldPath]] = field(default_factory=list)
    refs: list[_PolicyRef] = field(default_factory=list)


def _version(ctx: _Ctx, path: FieldPath, value: object) -> None:
    if type(value) is not int or value != 1:
        ctx.error(path, f"unsupported version {_describe(value)}; write version: 1")


def _document(parsed: _Parsed, data: object) -> None:
    ctx = parsed.ctx
    top = _mapping(ctx, (), data, "version: 1 and policies: [...]")
    if top is None:
        return
    _keys(ctx, (), top, TOP_KEYS, {"version": "write version: 1 at the top of the file"})
    _opt(ctx, (), top, "version", _version, None)
    for i, item in enumerate(_opt(ctx, (), top, "policies", _items, None) or ()):
        path: FieldPath = ("policies", i)
        spec = _policy(ctx, path, item)
        if spec is not None:
            parsed.policies.append(spec)
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            parsed.ids.append((item["id"], (*path, "id")))
    for i, item in enumerate(_opt(ctx, (), top, "tests", _items, None) or ()):
        test, refs = _test(ctx, ("tests", i), item)
        parsed.refs.extend(refs)
        if test is not None:
            parsed.tests.append(test)


def _items(ctx: _Ctx, path: FieldPath, value: object) -> list[object] | None:
    if isinstance(value, list):
        return value
    key = path[-1]
    ctx.error(path, f"expected a list of {key} (write {key}: [] for none); got {_describe(value)}")
    return None


def _parse(text: str, source: str, fmt: Format) -> _Parsed:
    try:
        found = _locate(text, fmt)
    except _ParseError as exc:
        parsed = _Parsed(_Ctx(source, _Lines()))
        parsed.ctx.error((), exc.message, line=exc.line)
        return parsed
    parsed = _Parsed(_Ctx(source, found.lines))
    for path, line, message in found.problems:
        parsed.ctx.error(path, message, line=line)
    parsed.ctx.quiet = found.unreadable
    _document(parsed, found.data)
    return parsed


def _merge(files: Sequence[_Parsed], sources: Sequence[str]) -> PolicyFile:
    """Cross-file checks (duplicate ids, ``expect.policies``) and the combined result."""
    first: dict[str, tuple[_Ctx, FieldPath]] = {}
    policies: list[PolicySpec] = []
    seen: set[str] = set()
    for parsed in files:
        for policy_id, path in parsed.ids:
            if policy_id in first:
                where, at = first[policy_id]
                parsed.ctx.error(
                    path,
                    f"duplicate policy id {policy_id!r}: already defined at "
                    f"{where.source}:{where.lines.line(at)} ({_field_name(at)}); "
                    "policy ids must be unique across all policy files — rename one",
                )
            else:
                first[policy_id] = (parsed.ctx, path)
    for parsed in files:
        for spec in parsed.policies:
            if spec.id not in seen:  # a duplicate id is reported above; keep the first
                seen.add(spec.id)
                policies.append(spec)
        _check_refs(parsed.ctx, parsed.refs, first)
    errors = [
        error
        for parsed in files
        for error in sorted(parsed.ctx.errors, key=lambda e: e.line if e.line is not None else 0)
    ]
    return PolicyFile(
        policies=tuple(policies),
        tests=tuple(t for parsed in files for t in parsed.tests),
        errors=tuple(errors),
        sources=tuple(sources),
    )


def _format_of(source: str) -> Format:
    return "json" if source.lower().endswith(".json") else "yaml"


def _read(path: str | Path) -> _Parsed:
    source = str(path)
    failed = _Parsed(_Ctx(source, _Lines()))
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        failed.ctx.error((), f"cannot read the policy file: {exc.strerror or exc}; check the path")
        return failed
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        failed.ctx.error(
            (),
            f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
            line=line,
        )
        return failed
    return _parse(text, source, _format_of(source))


# ---------------------------------------------------------------------------
# The public API.


def load_files(paths: Sequence[str | Path]) -> PolicyFile:
    """Read and validate policy files, merged into one :class:`PolicyFile`.

    A policy id defined in two files, or a missing, unreadable, non-UTF-8 or
    empty file, is an error. :attr:`PolicyFile.sources` holds the paths as given.
    """
    return _merge([_read(path) for path in paths], [str(path) for path in paths])


def load_text(text: str, source: str, fmt: Format | None = None) -> PolicyFile:
    """Read and validate one policy document.

    :param source: the name used in errors (usually the file's path).
    :param fmt: ``"yaml"`` or ``"json"``; by default ``.json`` sources are JSON, others YAML.
    """
    return _merge([_parse(text, source, fmt or _format_of(source))], [source])


def validate_policy(
    data: object, source: str = "<database>", line: int | None = None
) -> tuple[PolicySpec | None, list[PolicyError]]:
    """Validate one policy mapping (as in a file, or :meth:`PolicySpec.to_dict` from the database).

    :returns: the spec (``None`` when there are errors) and every error, each at ``line``.
    """
    ctx = _Ctx(source, _Lines(default=line))
    spec = _policy(ctx, (), data)
    return spec, ctx.errors


def validate_test(
    data: object,
    source: str = "<database>",
    line: int | None = None,
    known_ids: Collection[str] | None = None,
) -> tuple[PolicyTest | None, list[PolicyError]]:
    """Validate one ``tests:`` entry; with ``known_ids``, also its ``expect.policies``."""
    ctx = _Ctx(source, _Lines(default=line))
    test, refs = _test(ctx, (), data)
    if known_ids is not None:
        _check_refs(ctx, refs, known_ids)
    return (test if not ctx.errors else None), ctx.errors


class _Dumper(yaml.SafeDumper):
    """Never anchors (the loader refuses them); short flat collections on one line."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _is_flat(data: list[Any] | dict[str, Any]) -> bool:
    values = data.values() if isinstance(data, dict) else data
    return all(isinstance(v, str | int | float) or (isinstance(v, list) and _is_flat(v)) for v in values)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    return dumper.represent_sequence(f"{_TAG}seq", data, flow_style=_is_flat(data))


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.MappingNode:
    flow = len(data) <= 2 and _is_flat(data) and len(str(data)) <= 60
    return dumper.represent_mapping(f"{_TAG}map", data.items(), flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML folds these line breaks when it writes them plain or single-quoted.
    style = '"' if any(c in data for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar(f"{_TAG}str", data, style=style)


class _Block(dict[str, Any]):
    """A mapping always written in block style (the document itself)."""


def _represent_block(dumper: yaml.SafeDumper, data: _Block) -> yaml.MappingNode:
    return dumper.represent_mapping(f"{_TAG}map", data.items(), flow_style=False)


_Dumper.add_representer(_Block, _represent_block)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(dict, _represent_dict)


def dump_policies(specs: Sequence[PolicySpec], fmt: Format = "yaml") -> str:
    """Write policies as a policy file (``version: 1`` and ``policies:``).

    ``load_text(dump_policies(specs)).policies == tuple(specs)``.
    """
    document = _Block(version=1, policies=[spec.to_dict() for spec in specs])
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
