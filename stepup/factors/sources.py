"""Where a user's authenticators come from: ``STEPUP["FACTOR_SOURCES"]`` (default ``["django_otp"]``).

A source lists a user's confirmed authenticators; each factor kind picks the
ones it owns (:meth:`stepup.factors.Factor.owns`). An authenticator is a
django-otp :class:`~django_otp.models.Device`, or an object with the same
small surface: ``persistent_id``, ``name``, ``user_id``, ``verify_is_allowed()``,
``verify_token(token)``, and either ``_meta.label_lower`` or ``stepup_model``
naming its model for :attr:`~stepup.factors.Factor.device_models`, or
``stepup_kind`` naming its factor kind directly.

A source is a class with ``authenticators(user)`` and ``get(request, user, id)``;
``STEPUP["FACTOR_SOURCES"]`` lists short names from :data:`SOURCES` or
dotted paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django.utils.module_loading import import_string

from stepup import allauth_mfa
from stepup.conf import conf


class FactorSource:
    """The interface of a source of authenticators."""

    def authenticators(self, user: AbstractBaseUser) -> Iterable[Any]:
        """The user's confirmed authenticators."""
        raise NotImplementedError

    def get(self, request: HttpRequest, user: AbstractBaseUser, authenticator_id: str) -> Any | None:
        """The user's confirmed authenticator ``authenticator_id``, locked for update; else ``None``."""
        raise NotImplementedError


class DjangoOTPSource(FactorSource):
    """django-otp's devices (``devices_for_user``)."""

    def authenticators(self, user: AbstractBaseUser) -> Iterable[Any]:
        from django_otp import devices_for_user

        return devices_for_user(user, confirmed=True)

    def get(self, request: HttpRequest, user: AbstractBaseUser, authenticator_id: str) -> Any | None:
        from django_otp.models import Device

        if allauth_mfa.pk_from_persistent_id(authenticator_id) is not None:
            return None  # allauth's id space, never a django-otp device

        try:
            device = Device.from_persistent_id(authenticator_id, for_verify=True)
        except Exception:  # a malformed id names nothing
            return None
        if device is None or device.user_id != user.pk or not device.confirmed:
            return None
        return device


class AllauthSource(FactorSource):
    """``allauth.mfa``'s authenticators, checked by allauth's own code (:mod:`stepup.allauth_mfa`)."""

    def authenticators(self, user: AbstractBaseUser) -> Iterable[Any]:
        return allauth_mfa.factors_for_user(user)

    def get(self, request: HttpRequest, user: AbstractBaseUser, authenticator_id: str) -> Any | None:
        return allauth_mfa.code_attempt(request, user, authenticator_id)


SOURCES: dict[str, str] = {
    "django_otp": "stepup.factors.sources.DjangoOTPSource",
    "allauth": "stepup.factors.sources.AllauthSource",
}
"""Short names for ``STEPUP["FACTOR_SOURCES"]``."""


def sources() -> list[FactorSource]:
    found = []
    for name in conf.FACTOR_SOURCES:
        path = SOURCES.get(name, name)
        found.append(import_string(path)())
    return found


def authenticators(user: AbstractBaseUser) -> list[Any]:
    """Every confirmed authenticator of ``user``, from every configured source."""
    return [a for source in sources() for a in source.authenticators(user)]


def locked_authenticator(request: HttpRequest, user: AbstractBaseUser, authenticator_id: str) -> Any | None:
    """``authenticator_id`` reloaded for update from the first source that has it for ``user``."""
    for source in sources():
        found = source.get(request, user, authenticator_id)
        if found is not None:
            return found
    return None
