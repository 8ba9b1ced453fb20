"""Email codes (``email``): django-otp's ``otp_email.EmailDevice``, sent only on an explicit ``POST``.

Sending is :meth:`EmailFactor.begin` (``device`` + ``send=1`` on the verify
page, ``{"device": …, "send": true}`` on ``api-verify``), which obeys the
device's cooldown (``OTP_EMAIL_COOLDOWN_DURATION``); the code then verifies
like any token, under the device's throttle (``OTP_EMAIL_THROTTLE_FACTOR``)
and once only (django-otp clears it on success).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Begun, Choice
from stepup.factors.codes import CodeFactor

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.http import HttpRequest

    from stepup.flows.verification import Target

MASK = "\u2022\u2022\u2022"  # •••


def mask_address(address: str) -> str:
    """``bob@example.com`` → ``b•••@example.com``: enough to recognise, too little to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return MASK
    return f"{local[:1]}{MASK}@{domain}"


def device_address(device: Any) -> str:
    user = getattr(device, "user", None)
    return str(getattr(device, "email", "") or getattr(user, "email", "") or "")


class EmailFactor(CodeFactor):
    kind = "email"
    step_name = "email"
    label = _("Email code")
    device_models = ("otp_email.emaildevice",)
    begins = True
    numeric = True
    form_class = "stepup.forms.EmailCodeForm"
    source_hint = _("the code we emailed you")

    def choice_for(self, device: Any) -> Choice:
        choice = super().choice_for(device)
        return Choice(self, choice.id, choice.name, device, mask_address(device_address(device)))

    def begin(self, request: HttpRequest, user: AbstractBaseUser, choice: Choice, target: Target) -> Begun:
        """Email a fresh code, unless the device's cooldown since the last one is still running."""
        from stepup.throttling import Throttle

        device = choice.device
        if not device_address(device):
            return Begun(False, "no_address", gettext("This device has no email address to send a code to."))
        allowed, data = device.generate_is_allowed()
        if not allowed:
            until = (data or {}).get("next_generation_at")
            throttle = Throttle(locked=False, until=until if isinstance(until, datetime) else None)
            return Begun(False, "cooldown", _cooldown_message(throttle), throttle=throttle)
        device.generate_challenge()
        sent_to = mask_address(device_address(device))
        message = gettext("A code was sent to %(address)s. Enter it below.") % {"address": sent_to}
        return Begun(True, "sent", message, data={"sent_to": sent_to})


def _cooldown_message(throttle: Any) -> str:
    seconds = throttle.retry_after()
    if seconds is None:
        return gettext("A code was sent a moment ago. Wait a little before asking for another.")
    return gettext("A code was sent a moment ago. You can ask for another in %(seconds)s s.") % {
        "seconds": seconds
    }
