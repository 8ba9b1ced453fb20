"""Adding an email address as a factor: an unconfirmed ``EmailDevice``, confirmed by a code sent to it.

Like the authenticator app, the unconfirmed device is bound to the session
that started it. Sending obeys django-otp's cooldown; checking obeys its
throttling.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.db.models import Model

SESSION_KEY = "stepup.enrolment.email"


def available() -> bool:
    """Whether ``django_otp.plugins.otp_email`` is installed."""
    return apps.is_installed("django_otp.plugins.otp_email")


def _model() -> type[Model]:
    from django_otp.plugins.otp_email.models import EmailDevice

    return EmailDevice


def start(user: AbstractBaseUser, session: SessionBase, address: str) -> tuple[Model, bool]:
    """A fresh unconfirmed device for ``address``, bound to ``session``, and whether its code was sent."""
    model = _model()
    with transaction.atomic():
        model._default_manager.filter(user=user, confirmed=False).delete()
        device = model._default_manager.create(user=user, name=address, email=address, confirmed=False)
    session[SESSION_KEY] = device.pk
    return device, send(device)


def pending_device(user: AbstractBaseUser, session: SessionBase) -> Model | None:
    pk = session.get(SESSION_KEY)
    if not isinstance(pk, int):
        return None
    return _model()._default_manager.filter(pk=pk, user=user, confirmed=False).first()


def send(device: Model) -> bool:
    """Send a new code unless the cooldown forbids it; whether one was sent."""
    allowed, _ = device.generate_is_allowed()  # type: ignore[attr-defined]
    if not allowed:
        return False
    device.generate_challenge()  # type: ignore[attr-defined]
    return True


def confirm(user: AbstractBaseUser, session: SessionBase, token: str) -> Model | None:
    device = pending_device(user, session)
    if device is None or not device.verify_token(token):  # type: ignore[attr-defined]
        return None
    device.confirmed = True  # type: ignore[attr-defined]
    device.save(update_fields=["confirmed"])
    session.pop(SESSION_KEY, None)
    return device


def masked(address: str) -> str:
    """``b•••@example.com`` for ``bob@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else f"{address[:1]}•••"
