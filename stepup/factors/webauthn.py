"""Passkeys and security keys (``webauthn``): registered here; the webauthn branch adds the ceremony.

Until :class:`WebAuthnFactor` gains its ceremony (``begin``/``verify``), it
offers no choices, so a user with only a passkey is sent to enrol, and
:meth:`verify` refuses everything (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Choice, Factor

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.http import HttpRequest

    from stepup.flows.verification import Target


class WebAuthnFactor(Factor):
    kind = "webauthn"
    label = _("Passkey or security key")
    begins = True
    device_models = ("django_otp_webauthn.webauthncredential",)

    def choices(self, user: AbstractBaseUser) -> list[Choice]:
        return []

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        return False
