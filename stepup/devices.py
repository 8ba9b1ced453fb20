"""Which ways to step up a user has for a decision: a thin front to :mod:`stepup.factors.registry`.

:func:`usable_devices` is the one definition of "a way the user can step up
with": enforcement sends a user without one to enrol, and the verification
page and API offer exactly these. Every factor kind, its choices and its
label come from the registry (``STEPUP["FACTORS"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib.auth.base_user import AbstractBaseUser

from stepup.factors.base import Choice
from stepup.factors.registry import usable_choices


def usable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Choice]:
    """The user's choices that ``factors`` accept (empty: every implied kind, never ``password``).

    A user with none of these can't satisfy the decision here: they need to enrol one.
    """
    return usable_choices(user, tuple(factors))
