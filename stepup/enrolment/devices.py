"""A user's second factors as the devices page lists them, and renaming and removing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice

from stepup.devices import device_kind

KIND_LABELS = {
    "totp": _("Authenticator app"),
    "hotp": _("Hardware token"),
    "static": _("Backup codes"),
    "email": _("Email codes"),
    "webauthn": _("Passkey or security key"),
}
"""What each factor kind is called on the devices page."""


@dataclass(frozen=True)
class DeviceRow:
    """One confirmed device as the devices page lists it."""

    persistent_id: str
    name: str
    kind: str | None
    kind_label: str
    added_at: datetime | None
    last_used_at: datetime | None
    codes_left: int | None = None


def kind_label(kind: str | None) -> str:
    return str(KIND_LABELS.get(kind or "", _("Other device")))


def list_devices(user: AbstractBaseUser) -> list[DeviceRow]:
    """The user's confirmed devices, oldest first (an unfinished enrolment is not one)."""
    rows = [_row(device) for device in devices_for_user(user, confirmed=True)]
    return sorted(rows, key=lambda r: (r.added_at is None, r.added_at or datetime.min, r.name))


def _row(device: Device) -> DeviceRow:
    kind = device_kind(device)
    left = device.token_set.count() if isinstance(device, StaticDevice) else None
    return DeviceRow(
        persistent_id=device.persistent_id,
        name=device.name,
        kind=kind,
        kind_label=kind_label(kind),
        added_at=getattr(device, "created_at", None),
        last_used_at=getattr(device, "last_used_at", None),
        codes_left=left,
    )


def has_confirmed_device(user: AbstractBaseUser) -> bool:
    return any(True for _device in devices_for_user(user, confirmed=True))


def confirmed_kinds(user: AbstractBaseUser, *, without: Device | None = None) -> set[str]:
    """The factor kinds of the user's confirmed devices, leaving ``without`` out."""
    kinds = set()
    for device in devices_for_user(user, confirmed=True):
        if without is not None and device.persistent_id == without.persistent_id:
            continue
        kind = device_kind(device)
        if kind is not None:
            kinds.add(kind)
    return kinds


def find_own_device(user: AbstractBaseUser, persistent_id: str) -> Device | None:
    """The confirmed device of ``user`` with ``persistent_id``; ``None`` for anyone else's or unknown ids."""
    for device in devices_for_user(user, confirmed=True):
        if device.persistent_id == persistent_id:
            return device
    return None


def rename_device(device: Device, name: str) -> None:
    device.name = name
    device.save(update_fields=["name"])


def remove_device(device: Device) -> None:
    with transaction.atomic():
        device.delete()


def lock_user(user: AbstractBaseUser) -> None:
    """Serialise device changes of one user (call inside ``transaction.atomic``).

    "Has no factor yet, so no step-up" is checked and acted on under this lock:
    two sessions can't both enrol a "first" factor at once.
    """
    user._meta.model._default_manager.select_for_update().filter(pk=user.pk).first()
