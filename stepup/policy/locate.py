"""Locating values in a policy file: its plain data, and the line of every key and list item.

YAML is composed safely into nodes and turned into plain data by hand, so no
tag is ever constructed into an object, duplicate keys are caught at every
depth and every value keeps its line. Nodes come from libyaml when PyYAML has
it, much faster; on any error libyaml's reading is dropped and the file read
again by PyYAML's own parser, whose messages are the ones users see. JSON is
parsed by :mod:`json`; the line of each policy and test is found as the file is
read, every other line (by a small tokenizer) only when an error needs one.

What cannot be read at all is a :class:`ParseError`; what reads but is wrong (a
duplicate key, a YAML tag) is a problem recorded beside the data, for
validation to report with the rest.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stepup.policy.collector import collector_paused

Format = Literal["yaml", "json"]
FieldPath = tuple[str | int, ...]
"""Where a value sits in a file: ``("policies", 2, "when", "attrs")``."""

_LIBYAML: Any = getattr(yaml, "CSafeLoader", None)
"""PyYAML's safe loader on libyaml, when PyYAML was built with it."""

_ALIASES_UNSUPPORTED = (
    "YAML anchors and aliases are not supported in policy files; write each value out in full"
)


@dataclass
class Lines:
    """Line numbers (1-based) by path; a path without its own line takes its parent's.

    ``rest``, when set, works out every line: it is called the first time a path
    not yet in ``at`` is asked for, so a file without errors never pays for it.
    """

    at: dict[FieldPath, int] = field(default_factory=dict)
    duplicates: dict[FieldPath, int] = field(default_factory=dict)
    default: int | None = None
    rest: Callable[[], Lines] | None = None

    def line(self, path: FieldPath) -> int | None:
        if path not in self.at:
            self._complete()
        while path not in self.at:
            if not path:
                return self.default
            path = path[:-1]
        return self.at[path]

    def duplicate(self, path: FieldPath) -> int | None:
        """The line of the second occurrence of the key at ``path``."""
        self._complete()
        return self.duplicates.get(path)

    def key(self, path: FieldPath, line: int) -> None:
        """Record a mapping key; a second occurrence is remembered as a duplicate."""
        if path in self.at:
            self.duplicates.setdefault(path, line)
        else:
            self.at[path] = line

    def _complete(self) -> None:
        if self.rest is not None:
            every = self.rest()
            self.at, self.duplicates, self.rest = every.at, every.duplicates, None


@dataclass
class Located:
    data: object
    lines: Lines
    problems: list[tuple[FieldPath, int | None, str]] = field(default_factory=list)
    unreadable: set[FieldPath] = field(default_factory=set)
    """Values already reported as unreadable; validation stays quiet about them."""


class ParseError(Exception):
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


YAML_TAG = "tag:yaml.org,2002:"
_AS_TEXT = {f"{YAML_TAG}str", f"{YAML_TAG}timestamp"}  # a date stays the text that was written
_CONSTRUCTED = {f"{YAML_TAG}int", f"{YAML_TAG}float", f"{YAML_TAG}bool"}
_YAML_1_2_BOOLEANS = {"true", "True", "TRUE", "false", "False", "FALSE"}
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_KEY_TAGS = _AS_TEXT | _CONSTRUCTED | {f"{YAML_TAG}null"}
_STR, _INT, _BOOL, _NULL = (f"{YAML_TAG}{name}" for name in ("str", "int", "bool", "null"))
_MAP, _SEQ = f"{YAML_TAG}map", f"{YAML_TAG}seq"
_KEY_NODE_TAGS = frozenset(_KEY_TAGS | {_MAP, _SEQ})


def _duplicate_key(key: str, first_line: int | None) -> str:
    return (
        f"duplicate key {key!r} (first given on line {first_line}); "
        "a key may appear only once in a mapping — remove one"
    )


def _tag_problem(tag: str) -> str:
    shown = tag.replace(YAML_TAG, "!!", 1)
    if tag == f"{YAML_TAG}merge":
        return "YAML merge keys ('<<') are not supported in policy files; write the keys out"
    return (
        f"YAML tag {shown!r} is not allowed; policy files hold only plain strings, "
        "numbers, booleans, lists and mappings — remove the tag"
    )


class _NodeReader:
    """Turns composed YAML nodes into plain data, recording lines and problems.

    Written for speed (a 10,000-policy file has 250,000 nodes): the path of a
    value is built once, plain strings are taken as they are, and plain
    decimal integers and YAML 1.2 booleans are converted without PyYAML's
    constructor machinery.
    """

    def __init__(self, loader: yaml.constructor.SafeConstructor, found: Located) -> None:
        self.loader = loader
        self.found = found

    def problem(self, path: FieldPath, node: Node, message: str) -> None:
        self.found.problems.append((path, node.start_mark.line + 1, message))

    def unreadable(self, path: FieldPath, node: Node, message: str) -> None:
        self.problem(path, node, message)
        self.found.unreadable.add(path)

    def read(self, node: Node, path: FieldPath) -> object:
        self.found.lines.at.setdefault(path, node.start_mark.line + 1)
        return self.value(node, path)

    def value(self, node: Node, path: FieldPath) -> object:
        """The plain data of ``node``, whose line is recorded already."""
        if isinstance(node, ScalarNode):
            return node.value if node.tag == _STR else self.scalar(node, path)
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        assert isinstance(node, SequenceNode)
        return self.sequence(node, path)

    def mapping(self, node: MappingNode, path: FieldPath) -> dict[str, object] | None:
        if node.tag != _MAP:
            self.unreadable(path, node, _tag_problem(node.tag))
            return None
        result: dict[str, object] = {}
        lines = self.found.lines
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key is None:
                continue
            where = (*path, key)
            if key in result:
                self.problem(where, key_node, _duplicate_key(key, lines.at[where]))
                continue
            lines.key(where, key_node.start_mark.line + 1)  # the value's line is its key's
            result[key] = self.value(value_node, where)
        return result

    def key(self, node: Node, path: FieldPath) -> str | None:
        if node.tag not in _KEY_NODE_TAGS:
            self.problem(path, node, _tag_problem(node.tag))
            return None
        if not isinstance(node, ScalarNode):
            self.problem(path, node, "mapping keys must be plain strings, not lists or mappings")
            return None
        return str(node.value)

    def sequence(self, node: SequenceNode, path: FieldPath) -> list[object] | None:
        if node.tag != _SEQ:
            self.unreadable(path, node, _tag_problem(node.tag))
            return None
        return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]

    def scalar(self, node: ScalarNode, path: FieldPath) -> object:
        tag = node.tag
        if tag in _AS_TEXT:
            return str(node.value)
        if tag == _NULL:
            return None
        if tag not in _CONSTRUCTED:
            self.unreadable(path, node, _tag_problem(tag))
            return None
        problem = _yaml_1_1_only(node)
        if problem is not None:
            self.unreadable(path, node, problem)
            return None
        if tag == _INT:  # plain decimal digits: what PyYAML's constructor would make of them
            return int(node.value)
        if tag == _BOOL:  # true / True / TRUE / false / False / FALSE
            return node.value.lower() == "true"
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
    if node.tag == f"{YAML_TAG}bool" and text not in _YAML_1_2_BOOLEANS:
        return (
            f"{text!r} is a boolean in YAML 1.1 but text in YAML 1.2; write true or false, "
            "or quote it if it is text"
        )
    if (node.tag == f"{YAML_TAG}int" and not _PLAIN_INT.fullmatch(text)) or (
        node.tag == f"{YAML_TAG}float" and "_" in text
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


def _locate_yaml(text: str) -> Located:
    try:
        return _read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ParseError(mark.line + 1 if mark else None, _yaml_message(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ParseError(
            line, f"invalid character {chr(exc.character)!r} in YAML ({exc.reason}); remove it"
        ) from None
    except yaml.YAMLError as exc:
        raise ParseError(None, f"invalid YAML: {exc}") from None


def _read_yaml(text: str) -> Located:
    # Left to _SafeComposer: a file with an '&' (libyaml's nodes keep no anchors, and
    # _SafeComposer refuses them; an alias without an anchor is an error on both paths),
    # and one with a tab (libyaml reads some that PyYAML refuses).
    if _LIBYAML is not None and "&" not in text and "\t" not in text:
        try:
            return _read_nodes(_LIBYAML, text)
        except (yaml.YAMLError, UnicodeEncodeError):
            pass  # read again below: PyYAML's messages are the clear ones
    return _read_nodes(_SafeComposer, text)


def _read_nodes(loader_class: Callable[[str], Any], text: str) -> Located:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ParseError(1, _EMPTY_FILE)
        found = Located(None, Lines(default=1))
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


def _json_lines(text: str) -> Lines:
    """The line of every key and array item of an already-valid JSON text."""
    found = Lines(default=1)
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


def _plain_json(value: object, path: FieldPath, found: Located) -> object:
    if isinstance(value, _JsonObject):
        for key in value.duplicates:
            at = (*path, key)
            message = _duplicate_key(key, found.lines.line(at))
            found.problems.append((at, found.lines.duplicate(at), message))
        return {k: _plain_json(v, (*path, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v, (*path, i), found) for i, v in enumerate(value)]
    return value


def _locate_json(text: str) -> Located:
    try:
        data = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as exc:
        raise ParseError(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise ParseError(None, f"invalid JSON: {exc}") from None
    found = Located(None, _json_item_lines(text))
    found.data = _plain_json(data, (), found)
    return found


_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")


def _json_item_lines(text: str) -> Lines:
    """The lines of the top-level keys and of their lists' items (each policy and test) of valid JSON.

    Values are skipped by :mod:`json`'s scanner, so this costs little; every other
    line is left to :func:`_json_lines`, for when an error asks for one.
    """
    found = Lines(default=1, rest=lambda: _json_lines(text))
    starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def line(at: int) -> int:
        return bisect.bisect_right(starts, at)

    def skip(at: int) -> int:
        return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string

    at = skip(0)
    if text[at] != "{":
        return found
    found.at[()] = line(at)
    at = skip(at + 1)
    while text[at] != "}":
        key_at = at
        key, at = _SCAN(text, at)
        found.key((key,), line(key_at))
        at = skip(skip(at) + 1)  # the colon
        if text[at] == "[":
            at = skip(at + 1)
            index = 0
            while text[at] != "]":
                found.at.setdefault((key, index), line(at))
                at = skip(_SCAN(text, at)[1])
                if text[at] == ",":
                    at = skip(at + 1)
                index += 1
            at += 1
        else:
            at = _SCAN(text, at)[1]
        at = skip(at)
        if text[at] == ",":
            at = skip(at + 1)
    return found


_EMPTY_FILE = "the file is empty; a policy file starts with 'version: 1'"


def locate(text: str, fmt: Format) -> Located:
    """The data of a YAML or JSON text and where each value is; :class:`ParseError` if it can't be read."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ParseError(1, _EMPTY_FILE)
    try:
        with collector_paused():
            return _locate_json(text) if fmt == "json" else _locate_yaml(text)
    except RecursionError:
        raise ParseError(None, "the file is nested too deeply to be a policy file") from None
