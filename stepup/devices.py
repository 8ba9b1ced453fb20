"""Factor kinds of devices, and which of a user's devices can satisfy a decision.

:func:`usable_devices` is the one definition of "a device the user can step up
with": enforcement sends a user without one to enrol, and the verification
form and API offer exactly these. The devices come from the sources
``STEPUP["FACTOR_SOURCES"]`` names: django-otp's devices (``django_otp``)
and ``allauth.mfa``'s authenticators (``allauth``, see :mod:`stepup.allauth_mfa`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django_otp import devices_for_user
from django_otp.models import Device

from stepup import allauth_mfa
from stepup.conf import conf

# Model label (app_label.ModelName, lower-case) -> factor kind.
DEVICE_KINDS: dict[str, str] = {
    "otp_totp.totpdevice": "totp",
    "otp_hotp.hotpdevice": "hotp",
    "otp_static.staticdevice": "static",
    "otp_email.emaildevice": "email",
    "django_otp_webauthn.webauthncredential": "webauthn",
}


def device_kind(device: Any) -> str | None:
    """The factor kind of a device, or ``None`` for a kind stepup doesn't know."""
    if isinstance(device, Device):
        return DEVICE_KINDS.get(device._meta.label_lower)
    kind = getattr(device, "kind", None)  # allauth_mfa.AllauthFactor and CodeAttempt
    return kind if isinstance(kind, str) else None


def acceptable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Any]:
    """The user's confirmed devices from every source whose kind is in ``factors`` (empty: any kind)."""
    wanted = set(factors)
    found: list[Any] = []
    sources = conf.FACTOR_SOURCES
    if "django_otp" in sources:
        for device in devices_for_user(user, confirmed=True):
            kind = device_kind(device)
            if kind is not None and (not wanted or kind in wanted):
                found.append(device)
    if "allauth" in sources:
        found.extend(allauth_mfa.factors_for_user(user, wanted))
    return found


def load_for_verify(request: HttpRequest, user: AbstractBaseUser, persistent_id: str) -> Any | None:
    """The user's device ``persistent_id``, loaded for update to check one code, or ``None``.

    Only one of the user's own confirmed devices, from a configured source.
    """
    if allauth_mfa.pk_from_persistent_id(persistent_id) is not None:
        return (
            allauth_mfa.code_attempt(request, user, persistent_id)
            if "allauth" in conf.FACTOR_SOURCES
            else None
        )
    if "django_otp" not in conf.FACTOR_SOURCES:
        return None
    device = Device.from_persistent_id(persistent_id, for_verify=True)
    if device is None or device.user_id != user.pk or not device.confirmed:
        return None
    return device


CODE_KINDS: frozenset[str] = frozenset({"totp", "hotp", "static"})
"""Factor kinds whose devices verify a typed code without a prior challenge.

``email`` (needs a code sent first) and ``webauthn`` (a browser ceremony) are
known kinds, but stepup's verification form and API can't use them.
"""


CEREMONY_KINDS: frozenset[str] = frozenset({"webauthn"})
"""Factor kinds verified by a browser ceremony rather than a typed code (:mod:`stepup.factors.webauthn`)."""


def usable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Any]:
    """The user's confirmed devices that ``factors`` accept (empty: any) and that stepup can verify.

    A user with none of these can't satisfy the decision here: they need to enrol one.
    """
    return [d for d in acceptable_devices(user, factors) if device_kind(d) in CODE_KINDS | CEREMONY_KINDS]


def code_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Any]:
    """The usable devices that verify a typed code (what the code form and ``api-verify`` offer)."""
    return [d for d in acceptable_devices(user, factors) if device_kind(d) in CODE_KINDS]
