"""Which ways to step up a user has for a decision: a thin front to :mod:`stepup.factors.registry`.

:func:`usable_devices` is the one definition of "a way the user can step up
with": enforcement sends a user without one to enrol, and the verification
page and API offer exactly these. Every factor kind, its choices and its
label come from the registry (``STEPUP["FACTORS"]``); the authenticators
come from the sources ``STEPUP["FACTOR_SOURCES"]`` names
(:mod:`stepup.factors.sources`: django-otp's devices, ``allauth.mfa``'s
authenticators).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from stepup.factors.base import Choice
from stepup.factors.registry import factors, usable_choices
from stepup.factors.sources import authenticators


def usable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Choice]:
    """The user's choices that ``factors`` accept (empty: every implied kind, never ``password``).

    A user with none of these can't satisfy the decision here: they need to enrol one.
    """
    return usable_choices(user, tuple(factors))


def device_kind(device: Any) -> str | None:
    """The factor kind of an authenticator (a django-otp device, …), or ``None`` for one no kind owns."""
    return next((f.kind for f in factors() if f.owns(device)), None)


def has_second_factor(user: AbstractBaseUser) -> bool:
    """Whether ``user`` has a confirmed authenticator of a registered kind (from any source)."""
    return any(device_kind(a) is not None for a in authenticators(user))
