"""The building blocks of validation: the context that collects errors, and the checks of single values.

A check takes the context, the value's path in the file and the value; it
reports every problem to the context (file, line and field) and returns the
value in canonical form, or ``None``. :mod:`stepup.policy.validation` puts
them together into policies, tests and files.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepup.policy.locate import FieldPath, Lines
from stepup.policy.model import (
    FALLBACK_LANGUAGE,
    HTTP_METHODS,
    LANGUAGE_CODE,
    NUMBER_MAX_LENGTH,
    Description,
    PolicyError,
    as_number,
    factor_kinds,
)

Check = Callable[["Context", FieldPath, object], Any]
"""Validates one value at a path, reports problems to the context, returns the normalised value."""

COMPARISONS = ("gt", "gte", "lt", "lte")
MAX_NAME_LENGTH = 200
"""The longest action or URL name (or pattern) in a file, ``api-status`` query or ``api-decide`` input."""
MAX_AGE_LIMIT = 2**31 - 1
"""The largest ``max_age`` (about 68 years): what every database's ``PositiveIntegerField`` holds."""

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.:*-]")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DESCRIPTION_EXAMPLE = "{en: Payments need a second factor., de: Zahlungen brauchen einen zweiten Faktor.}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_PROSE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # tab and newline are prose


@dataclass
class Context:
    source: str
    lines: Lines
    errors: list[PolicyError] = field(default_factory=list)
    quiet: set[FieldPath] = field(default_factory=set)

    def error(self, path: FieldPath, message: str, line: int | None = None) -> None:
        if any(path[:n] in self.quiet for n in range(len(path) + 1)):
            return
        line = self.lines.line(path) if line is None else line
        self.errors.append(PolicyError(self.source, line, field_name(path), message))


def field_name(path: FieldPath) -> str:
    """``("policies", 2, "when")`` -> ``"policies[2].when"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def describe(value: object) -> str:
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


def suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def unknown(kind: str, word: str, choices: Sequence[str]) -> str:
    return f"unknown {kind} {word!r}; allowed {kind}s: {', '.join(choices)}{suggest(word, choices)}"


def check_mapping(ctx: Context, path: FieldPath, value: object, example: str) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    ctx.error(path, f"expected a mapping, e.g. {example}; got {describe(value)}")
    return None


def _filled_mapping(
    ctx: Context, path: FieldPath, value: object, example: str, choices: Collection[str]
) -> Mapping[str, Any] | None:
    """A mapping that must hold something: ``roles: {}`` or an empty ``when:`` is an error."""
    data = check_mapping(ctx, path, value, example)
    if data is not None and not data:
        ctx.error(
            path,
            f"{path[-1]} is empty; give {' / '.join(choices)} (e.g. {example}) or remove it",
        )
        return None
    return data


def check_keys(
    ctx: Context,
    path: FieldPath,
    data: Mapping[str, Any],
    allowed: Sequence[str],
    required: Mapping[str, str] | None = None,
) -> None:
    """Unknown keys are errors; ``required`` maps each required key to a hint."""
    for key in data:
        if key not in allowed:
            ctx.error((*path, key), unknown("key", key, allowed))
    for key, hint in (required or {}).items():
        if key not in data:
            ctx.error((*path, key), f"missing required key {key!r}: {hint}")


def optional(
    ctx: Context, path: FieldPath, data: Mapping[str, Any], key: str, check: Check, default: Any
) -> Any:
    return check(ctx, (*path, key), data[key]) if key in data else default


def check_list(
    ctx: Context, path: FieldPath, value: object, item: Check, example: str, *, empty_ok: bool = False
) -> list[Any] | None:
    if not isinstance(value, list | tuple):
        ctx.error(path, f"expected a list, e.g. {example}; got {describe(value)}")
        return None
    if not value and not empty_ok:
        ctx.error(path, f"the list is empty; give at least one item (e.g. {example}) or remove it")
        return None
    return [item(ctx, (*path, i), v) for i, v in enumerate(value)]


def check_text(ctx: Context, path: FieldPath, value: object, *, prose: bool = False) -> str | None:
    """A string without control characters (``prose`` may hold tabs and line breaks) or lone surrogates."""
    if not isinstance(value, str):
        ctx.error(path, f"expected a string; got {describe(value)} — quote it")
        return None
    bad = (_CONTROL_IN_PROSE if prose else _CONTROL).search(value)
    if bad is None:
        return value
    code = ord(bad.group())
    kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "the control character"
    hint = "; a description may hold tabs and line breaks, no other control characters" if prose else ""
    ctx.error(path, f"contains {kind} U+{code:04X} (character {bad.start() + 1}); remove it{hint}")
    return None


def check_description(ctx: Context, path: FieldPath, value: object) -> Description | None:
    """A description: one text, or texts per language (``{en: …, de: …}``; ``en`` is the fallback).

    A language code is written as Django writes it (``de``, ``pt-br``,
    ``zh-hans``); whether Django knows it is checked beside the URLconf
    check (:func:`stepup.i18n.check_description_languages`), since this
    module can't import Django.
    """
    if not isinstance(value, Mapping):
        if isinstance(value, str):
            return check_text(ctx, path, value, prose=True)
        ctx.error(
            path,
            f"expected a string or a mapping of language code to text, {_DESCRIPTION_EXAMPLE}; "
            f"got {describe(value)}",
        )
        return None
    if FALLBACK_LANGUAGE not in value:
        ctx.error(
            path,
            f"the {FALLBACK_LANGUAGE!r} text is missing; it is shown in every other language, "
            f"e.g. {_DESCRIPTION_EXAMPLE}",
        )
    texts: dict[str, str] = {}
    for code, text in value.items():
        if not isinstance(code, str) or not LANGUAGE_CODE.fullmatch(code):
            ctx.error(
                path, f"{code!r} is not a language code as Django writes it (lower case: de, pt-br, zh-hans)"
            )
            continue
        checked = check_text(ctx, (*path, code), text, prose=True)
        if checked is not None and not checked.strip():
            ctx.error((*path, code), "expected a non-empty text; leave the language out instead")
        elif checked is not None:
            texts[code] = checked
    return texts if len(texts) == len(value) and FALLBACK_LANGUAGE in texts else None


def check_name(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_text(ctx, path, value)
    if text == "":
        ctx.error(path, "expected a non-empty string")
        return None
    return text


def check_action_or_url(ctx: Context, path: FieldPath, value: object) -> str | None:
    """A name the engine matches against patterns: bounded, so matching stays cheap."""
    text = check_name(ctx, path, value)
    if text is not None and len(text) > MAX_NAME_LENGTH:
        ctx.error(path, f"is {len(text)} characters long; names are at most {MAX_NAME_LENGTH} characters")
        return None
    return text


def one_of(choices: Sequence[str], kind: str) -> Check:
    def check(ctx: Context, path: FieldPath, value: object) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        word = value if isinstance(value, str) else describe(value)
        ctx.error(path, unknown(kind, word, choices))
        return None

    return check


def check_bool(ctx: Context, path: FieldPath, value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    ctx.error(path, f"expected true or false; got {describe(value)}")
    return None


@dataclass(frozen=True)
class _Number:
    """A numeric operand: what it must look like, and whether it may be negative / fractional."""

    expected: str
    integer: bool = False
    non_negative: bool = False
    decimal_strings: bool = False
    maximum: int | None = None

    def __call__(self, ctx: Context, path: FieldPath, value: object) -> int | float | None:
        number = _decimal(value) if self.decimal_strings and isinstance(value, str) else value
        if not _is_number(number) or (self.integer and isinstance(number, float)):
            ctx.error(path, f"expected {self.expected}; got {describe(value)}")
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


MAX_AGE = _Number(
    "a whole number of seconds, 0 or more (e.g. 300; 0 = verify for this one request)",
    integer=True,
    non_negative=True,
    maximum=MAX_AGE_LIMIT,
)
SECONDS = _Number("a number of seconds, 0 or more (e.g. 3600)", non_negative=True)
_ATTR_NUMBER = _Number(
    "a number, or a string holding a decimal number in ASCII digits, at most "
    f'{NUMBER_MAX_LENGTH} characters (e.g. 1000 or "12.50")',
    decimal_strings=True,
)


# ---------------------------------------------------------------------------
# Checks for single items.


def _glob_item(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_action_or_url(ctx, path, value)
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


def check_method(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_name(ctx, path, value)
    if text is None:
        return None
    if text.upper() not in HTTP_METHODS:
        ctx.error(path, unknown("HTTP method", text, HTTP_METHODS))
        return None
    return text.upper()


def _factor_item(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_name(ctx, path, value)
    if text is not None and text not in (known := factor_kinds()):
        ctx.error(path, unknown("factor kind", text, known))
        return None
    return text


def _cidr_item(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_name(ctx, path, value)
    if text is None:
        return None
    try:
        return _network(text)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            ctx.error(path, f"{text!r} is not an IP network: {exc}; write a CIDR like 10.0.0.0/8")
            return None
        ctx.error(path, f"{text!r} has host bits set; did you mean {str(loose)!r}?")
        return None


@functools.lru_cache(maxsize=1024)  # big files name the same few networks many times
def _network(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=True))


def check_ip(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_name(ctx, path, value)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        ctx.error(path, f"{text!r} is not an IP address; write one like 203.0.113.9 or 2001:db8::1")
        return None


def _scalar_item(ctx: Context, path: FieldPath, value: object) -> object:
    if isinstance(value, str):
        return check_text(ctx, path, value)
    if isinstance(value, bool) or _is_number(value):
        return value
    ctx.error(path, f"expected a string, number or boolean; got {describe(value)}")
    return None


# ---------------------------------------------------------------------------
# Lists and conditions.


def check_globs(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, _glob_item, "[billing.update, billing.*]", empty_ok=True)


def check_methods(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    methods = check_list(ctx, path, value, check_method, "[POST, PUT, PATCH, DELETE]")
    if methods is None:
        return None
    if "HEAD" in methods:
        # Django answers HEAD with the GET view, so the engine matches HEAD as GET.
        ctx.error(
            path, "HEAD requests are matched as GET (Django serves them with the GET view); list GET instead"
        )
        return None
    return list(dict.fromkeys(methods))


def check_factors(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, _factor_item, f"[{', '.join(factor_kinds()[:2])}]")


def _roles(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, check_name, "[finance]")


def _cidrs(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, _cidr_item, '["10.0.0.0/8"]')


def _scalars(ctx: Context, path: FieldPath, value: object) -> list[object] | None:
    return check_list(ctx, path, value, _scalar_item, "[EUR, USD]")


@dataclass(frozen=True)
class _Condition:
    """A mapping of operators to operands, e.g. ``{any_of: [finance]}``."""

    operators: Mapping[str, Check]
    example: str

    def __call__(self, ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
        data = _filled_mapping(ctx, path, value, self.example, self.operators)
        if data is None:
            return None
        result: dict[str, Any] = {}
        for op, operand in data.items():
            check = self.operators.get(op)
            if check is None:
                ctx.error((*path, op), unknown("operator", op, list(self.operators)))
            else:
                result[op] = check(ctx, (*path, op), operand)
        return result


_ROLES = _Condition(dict.fromkeys(("any_of", "all_of", "none_of"), _roles), "{any_of: [finance]}")
_ORIGIN = _Condition(dict.fromkeys(("in", "not_in"), _cidrs), '{not_in: ["10.0.0.0/8"]}')
_SESSION_AGE = _Condition(dict.fromkeys(COMPARISONS, SECONDS), "{gt: 3600}")
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


def _attrs(ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
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


def check_when(ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
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
        ctx.error((*path, key), unknown("condition", key, list(_WHEN)) + hint)
    return result
