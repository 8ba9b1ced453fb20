"""Throttling of step-up verification: per device (django-otp's) and per user (stepup's).

Two limits apply to every verification attempt, from the HTML form and the
JSON API alike:

- **Per device**: django-otp's own throttling. Devices built on
  :class:`django_otp.models.ThrottlingMixin` (TOTP, HOTP, static and email
  devices) refuse verification for ``factor * 2 ** (failures - 1)`` seconds
  after each failed attempt (``OTP_TOTP_THROTTLE_FACTOR`` and friends,
  default 1) and count failures per device only: a success on one device
  never resets the counter of another. :func:`device_throttle` asks the
  device through :meth:`~django_otp.models.Device.verify_is_allowed`.
- **Per user**: ``STEPUP["USER_FAILURE_LIMIT"]`` consecutive failed attempts
  across all devices, sessions and client IPs lock the user out of
  verification for ``STEPUP["USER_LOCKOUT_SECONDS"]``. The counter lives in
  :class:`stepup.models.UserState`, so neither a new session nor a new IP
  resets it; only a successful verification does.

:func:`lock_user` must be called inside ``transaction.atomic()``: it locks the
user's row (``SELECT … FOR UPDATE``) so that parallel attempts of one user are
serialised and every failure is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import F
from django.utils import timezone

from stepup.conf import conf
from stepup.models import UserState


@dataclass(frozen=True)
class Throttle:
    """Why an attempt may not be made now, and until when.

    :ivar locked: ``True`` for the per-user lockout, ``False`` for a device's throttle.
    :ivar until: when attempts are allowed again; ``None`` when the device didn't say.
    """

    locked: bool
    until: datetime | None

    def retry_after(self, now: datetime | None = None) -> int | None:
        """Whole seconds to wait (at least 1), or ``None`` when unknown."""
        if self.until is None:
            return None
        seconds = (self.until - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(seconds))


def lock_user(user: AbstractBaseUser) -> UserState:
    """The user's :class:`~stepup.models.UserState`, created if needed, locked until commit."""
    state, _ = UserState.objects.get_or_create(user_id=user.pk)
    return UserState.objects.select_for_update().get(pk=state.pk)


def user_lockout(state: UserState) -> Throttle | None:
    """The per-user lockout in force for ``state``, if any."""
    if state.locked_until is not None and state.locked_until > timezone.now():
        return Throttle(locked=True, until=state.locked_until)
    return None


def record_failure(state: UserState) -> Throttle | None:
    """Count one failed attempt; lock the user out when the limit is reached.

    :returns: the lockout that this failure started, else ``None``.
    """
    UserState.objects.filter(pk=state.pk).update(failures=F("failures") + 1)
    failures = UserState.objects.filter(pk=state.pk).values_list("failures", flat=True).get()
    if failures < conf.USER_FAILURE_LIMIT:
        return None
    until = timezone.now() + timedelta(seconds=conf.USER_LOCKOUT_SECONDS)
    # The lockout replaces the count: after it, the user has a fresh allowance.
    UserState.objects.filter(pk=state.pk).update(failures=0, locked_until=until)
    return Throttle(locked=True, until=until)


def record_success(state: UserState) -> None:
    """Reset the consecutive-failure count after a successful verification."""
    UserState.objects.filter(pk=state.pk).update(failures=0, locked_until=None)


def device_throttle(device: Any) -> Throttle | None:
    """django-otp's throttle for ``device``, if it refuses verification now."""
    allowed, data = device.verify_is_allowed()
    if allowed:
        return None
    until = _as_datetime((data or {}).get("locked_until"))
    return Throttle(locked=False, until=until)


def _as_datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def current_lockout(user: AbstractBaseUser) -> Throttle | None:
    """The per-user lockout in force for ``user``, read without locking (for display)."""
    state = UserState.objects.filter(user_id=user.pk).first()
    return user_lockout(state) if state is not None else None
