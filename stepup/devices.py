"""Factor kinds of django-otp devices, and which of a user's devices can satisfy a decision.

:func:`usable_devices` is the one definition of "a device the user can step up
with": enforcement sends a user without one to enrol, and the verification
form and API offer exactly these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib.auth.base_user import AbstractBaseUser
from django_otp import devices_for_user
from django_otp.models import Device

# Model label (app_label.ModelName, lower-case) -> factor kind.
DEVICE_KINDS: dict[str, str] = {
    "otp_totp.totpdevice": "totp",
    "otp_hotp.hotpdevice": "hotp",
    "otp_static.staticdevice": "static",
    "otp_email.emaildevice": "email",
    "django_otp_webauthn.webauthncredential": "webauthn",
}


def device_kind(device: Device) -> str | None:
    """The factor kind of a django-otp device, or ``None`` for a kind stepup doesn't know."""
    return DEVICE_KINDS.get(device._meta.label_lower)


def acceptable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Device]:
    """The user's confirmed devices whose kind is in ``factors`` (empty: any known kind)."""
    wanted = set(factors)
    found = []
    for device in devices_for_user(user, confirmed=True):
        kind = device_kind(device)
        if kind is not None and (not wanted or kind in wanted):
            found.append(device)
    return found


CODE_KINDS: frozenset[str] = frozenset({"totp", "hotp", "static"})
"""Factor kinds whose devices verify a typed code without a prior challenge.

``email`` (needs a code sent first) and ``webauthn`` (a browser ceremony) are
known kinds, but stepup's verification form and API can't use them.
"""


CEREMONY_KINDS: frozenset[str] = frozenset({"webauthn"})
"""Factor kinds verified by a browser ceremony rather than a typed code (:mod:`stepup.factors.webauthn`)."""


def usable_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Device]:
    """The user's confirmed devices that ``factors`` accept (empty: any) and that stepup can verify.

    A user with none of these can't satisfy the decision here: they need to enrol one.
    """
    return [d for d in acceptable_devices(user, factors) if device_kind(d) in CODE_KINDS | CEREMONY_KINDS]


def code_devices(user: AbstractBaseUser, factors: Sequence[str] | Iterable[str] = ()) -> list[Device]:
    """The usable devices that verify a typed code (what the code form and ``api-verify`` offer)."""
    return [d for d in acceptable_devices(user, factors) if device_kind(d) in CODE_KINDS]
