"""The one registry of factor kinds: ``STEPUP["FACTORS"]``, dotted paths of :class:`~stepup.factors.Factor`s.

Read on every access (so ``override_settings`` works) and cached per value of
the setting. A project adds a kind by appending its class's path to the
default list::

    from stepup.factors.registry import DEFAULT_FACTORS
    STEPUP = {"FACTORS": [*DEFAULT_FACTORS, "myproject.factors.SMSFactor"]}

A wrong entry (not importable, not a Factor, no or duplicate kind) is
reported by the system check ``stepup.E030`` and left out here.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from django.utils.module_loading import import_string

from stepup.conf import conf
from stepup.factors.base import Choice, Factor

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from stepup.forms import FactorForm

logger = logging.getLogger("stepup.factors")

DEFAULT_FACTORS: tuple[str, ...] = (
    "stepup.factors.codes.TOTPFactor",
    "stepup.factors.codes.HOTPFactor",
    "stepup.factors.codes.StaticFactor",
    "stepup.factors.email.EmailFactor",
    "stepup.factors.webauthn.WebAuthnFactor",
    "stepup.factors.password.PasswordFactor",
)
"""The built-in kinds, in the order the verify page offers them."""

KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,15}")


class FactorConfigError(Exception):
    """One entry of ``STEPUP["FACTORS"]`` can't be used (see the system check ``stepup.E030``)."""


def load_factor(path: Any) -> Factor:
    """The factor instance for one ``STEPUP["FACTORS"]`` entry (a dotted path or a class)."""
    try:
        cls = import_string(path) if isinstance(path, str) else path
    except ImportError as exc:
        raise FactorConfigError(f"{path!r} can't be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Factor)):
        raise FactorConfigError(f"{path!r} is not a subclass of stepup.factors.Factor.")
    if not isinstance(cls.kind, str) or not KIND_PATTERN.fullmatch(cls.kind):
        raise FactorConfigError(f"{path!r} has no valid kind (lower-case letters, digits, _; at most 16).")
    return cls()


@functools.lru_cache(maxsize=8)
def _load(paths: tuple[Any, ...]) -> tuple[Factor, ...]:
    found: dict[str, Factor] = {}
    for path in paths:
        try:
            factor = load_factor(path)
        except FactorConfigError as exc:
            logger.error("STEPUP['FACTORS']: %s", exc)
            continue
        if factor.kind in found:
            logger.error("STEPUP['FACTORS']: kind %r is registered twice; the first one counts.", factor.kind)
            continue
        if not factor.available():
            continue
        found[factor.kind] = factor
    return tuple(found.values())


def factors() -> tuple[Factor, ...]:
    """Every registered and available factor, in the order of ``STEPUP["FACTORS"]``."""
    return _load(tuple(conf.FACTORS))


def get_factor(kind: str) -> Factor | None:
    return next((f for f in factors() if f.kind == kind), None)


def kinds() -> tuple[str, ...]:
    """The registered kinds: exactly what a policy's ``factors:`` may name."""
    return tuple(f.kind for f in factors())


def implied_kinds() -> tuple[str, ...]:
    """The kinds a policy that omits ``factors`` accepts (every registered kind but ``password``)."""
    return tuple(f.kind for f in factors() if f.implied)


def explicit_kinds() -> frozenset[str]:
    """The kinds a policy must name to accept (``password``)."""
    return frozenset(f.kind for f in factors() if not f.implied)


def label(kind: str) -> str:
    factor = get_factor(kind)
    return str(factor.label) if factor is not None else kind


def accepted(wanted: Sequence[str] | frozenset[str] | tuple[str, ...] = ()) -> tuple[Factor, ...]:
    """The factors a decision accepts: those named in ``wanted``, or every implied one when it is empty."""
    want = set(wanted)
    return tuple(f for f in factors() if (f.kind in want if want else f.implied))


def usable_choices(user: AbstractBaseUser, wanted: Sequence[str] | tuple[str, ...] = ()) -> list[Choice]:
    """The user's choices that can satisfy a decision accepting ``wanted`` (empty: any implied kind).

    The one definition of "a way the user can step up": enforcement sends a
    user without one to enrol; the verify page and the API offer exactly these.
    """
    return [choice for factor in accepted(wanted) for choice in factor.choices(user)]


def form_class_for(factor: Factor) -> type[FactorForm]:
    """``STEPUP["FORMS"][step]`` when set, else the factor's :attr:`~Factor.form_class`."""
    path = conf.FORMS.get(factor.step, factor.form_class)
    return cast("type[FactorForm]", import_string(path) if isinstance(path, str) else path)
