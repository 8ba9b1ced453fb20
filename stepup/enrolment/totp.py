"""Adding an authenticator app: an unconfirmed TOTP device, its QR code and key, confirmed by a code.

The unconfirmed device is bound to the session that started it (its id is
kept in the session), so another session of the same user can't finish an
enrolment it didn't start and whose secret it never saw.
"""

from __future__ import annotations

from base64 import b32encode
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.utils.translation import gettext
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

SESSION_KEY = "stepup.enrolment.totp"


@dataclass(frozen=True)
class PendingApp:
    """An unconfirmed TOTP device and what the user needs to add it to an app."""

    device: TOTPDevice
    qr_svg: str | None
    secret: str
    config_url: str


def start(user: AbstractBaseUser, session: SessionBase, name: str = "") -> TOTPDevice:
    """A fresh unconfirmed TOTP device for ``user``, bound to ``session``; earlier unfinished ones go."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = TOTPDevice.objects.create(
            user=user, name=name or gettext("Authenticator app"), confirmed=False
        )
    session[SESSION_KEY] = device.pk
    return device


def pending_device(user: AbstractBaseUser, session: SessionBase) -> TOTPDevice | None:
    """The unconfirmed device this session started, if it still exists."""
    pk = session.get(SESSION_KEY)
    if not isinstance(pk, int):
        return None
    return TOTPDevice.objects.filter(pk=pk, user=user, confirmed=False).first()


def pending(user: AbstractBaseUser, session: SessionBase) -> PendingApp | None:
    device = pending_device(user, session)
    if device is None:
        return None
    return PendingApp(device, qr_svg(device.config_url), format_secret(device.bin_key), device.config_url)


def qr_svg(text: str) -> str | None:
    """``text`` as an inline SVG QR code, or ``None`` without ``segno`` (the key is shown either way)."""
    try:
        import segno
    except ImportError:
        return None
    return str(segno.make(text, error="m").svg_inline(scale=5, border=2, title=gettext("QR code")))


def format_secret(key: bytes) -> str:
    """A base32 secret in groups of four, as authenticator apps accept it for manual entry."""
    text = b32encode(key).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def confirm(user: AbstractBaseUser, session: SessionBase, token: str) -> TOTPDevice | None:
    """Confirm this session's pending device if ``token`` is a code from it; the device, or ``None``."""
    device = pending_device(user, session)
    if device is None or not device.verify_token(token):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    session.pop(SESSION_KEY, None)
    return device


def current_code(device: TOTPDevice, offset: int = 0) -> str:
    """The code ``device`` accepts now, or ``offset`` time steps from now (for seeding and tests)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + offset)
    return f"{totp.token():0{device.digits}d}"
