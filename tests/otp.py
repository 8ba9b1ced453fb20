"""What a test user's second factors give: the codes of an authenticator app, backup codes."""

from __future__ import annotations

from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

BACKUP_CODES = ("alpha111", "bravo222", "charlie3", "delta444")
"""The codes of :func:`backup_codes_of`'s device, in order."""


def code(device: TOTPDevice, offset: int = 0) -> str:
    """The device's TOTP code now (``offset`` steps away), computed from its key."""
    totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    totp.drift = device.drift + offset
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    """A code that no step within the device's tolerance accepts."""
    valid = {code(device, offset) for offset in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def backup_codes_of(user: object) -> StaticDevice:
    """A confirmed backup-code device of ``user`` holding :data:`BACKUP_CODES`."""
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    StaticToken.objects.bulk_create(StaticToken(device=device, token=token) for token in BACKUP_CODES)
    return device
