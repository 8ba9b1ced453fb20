"""The account-security flows behind the Security page: TOTP enrollment, backup codes, removal.

Views stay thin and call these; the seeding command reuses them too.
"""

from __future__ import annotations

from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime

import segno
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

AUTHENTICATOR_NAME = "Phone"
BACKUP_CODE_COUNT = 10


@dataclass(frozen=True)
class DeviceRow:
    """A confirmed device as the Security page lists it."""

    persistent_id: str
    name: str
    kind: str
    last_used_at: datetime | None
    codes_left: int | None = None


@dataclass(frozen=True)
class PendingEnrollment:
    """An unconfirmed TOTP device and what the user needs to add it to an app."""

    device: TOTPDevice
    qr_svg: str
    secret: str


def list_devices(user: User) -> list[DeviceRow]:
    """The user's confirmed devices (an unfinished enrollment is a :class:`PendingEnrollment`)."""
    return [_device_row(device) for device in devices_for_user(user, confirmed=True)]


def _device_row(device: Device) -> DeviceRow:
    used = getattr(device, "last_used_at", None)
    if isinstance(device, StaticDevice):
        left = device.token_set.count()
        return DeviceRow(device.persistent_id, device.name, "Backup codes", used, left)
    return DeviceRow(device.persistent_id, device.name, "Authenticator app", used)


def has_confirmed_device(user: User) -> bool:
    return any(devices_for_user(user, confirmed=True))


def start_totp_enrollment(user: User) -> TOTPDevice:
    """A fresh unconfirmed TOTP device for ``user``; any earlier unfinished one is discarded."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def pending_device(user: User) -> TOTPDevice | None:
    """The TOTP device waiting for its first code, if enrollment has started."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()


def pending_enrollment(user: User) -> PendingEnrollment | None:
    device = pending_device(user)
    if device is None:
        return None
    return PendingEnrollment(
        device=device,
        qr_svg=segno.make(device.config_url, error="m").svg_inline(scale=4, border=2),
        secret=format_secret(device.bin_key),
    )


def format_secret(key: bytes) -> str:
    """A base32 secret in groups of four, as authenticator apps accept it for manual entry."""
    text = b32encode(key).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def confirm_totp_enrollment(user: User, token: str) -> bool:
    """Confirm the pending device when ``token`` is a current code from it."""
    device = pending_device(user)
    if device is None or not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return True


def current_totp_code(device: TOTPDevice, offset: int = 0) -> str:
    """The code ``device`` accepts now, or ``offset`` time steps from now."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + offset)
    return f"{totp.token():0{device.digits}d}"


def replace_backup_codes(
    user: User, codes: list[str] | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[str]:
    """Give ``user`` one new set of backup codes (random unless ``codes`` is given); return them."""
    codes = codes or [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    today = timezone.localdate()
    with transaction.atomic(using=using):
        StaticDevice.objects.using(using).filter(user=user).delete()
        device = StaticDevice.objects.using(using).create(
            user=user, name=f"Made {today.day} {today:%b %Y}", confirmed=True
        )
        StaticToken.objects.using(using).bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def find_own_device(user: User, persistent_id: str) -> Device | None:
    """The device of ``user`` with ``persistent_id``; ``None`` for anyone else's or unknown ids."""
    for device in devices_for_user(user, confirmed=None):
        if device.persistent_id == persistent_id:
            return device
    return None
