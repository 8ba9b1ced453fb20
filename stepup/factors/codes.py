"""Typed codes from django-otp devices: ``totp``, ``hotp`` (hardware token), ``static`` (backup codes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Choice, Factor

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.http import HttpRequest

    from stepup.flows.verification import Target


class CodeFactor(Factor):
    """A device that checks a typed code (``device.verify_token``) without a first step.

    :cvar numeric: whether the codes are digits only, as many as the device
        shows (``device.digits``): django-otp compares ``int(token)``, which
        would also take ``"+123456"`` for ``123456``.
    :cvar source_hint: where the user finds the code, for the hint under the field.
    """

    step_name = "code"
    numeric: bool = False
    source_hint: Any = _("the code your device shows")

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        return bool(choice.device.verify_token(data["token"]))


class TOTPFactor(CodeFactor):
    kind = "totp"
    label = _("Authenticator app")
    device_models = ("otp_totp.totpdevice",)
    numeric = True
    source_hint = _("the code from your authenticator app")


class HOTPFactor(CodeFactor):
    kind = "hotp"
    label = _("Hardware token")
    device_models = ("otp_hotp.hotpdevice",)
    numeric = True
    source_hint = _("the code from your hardware token")


class StaticFactor(CodeFactor):
    kind = "static"
    label = _("Backup code")
    device_models = ("otp_static.staticdevice",)
    source_hint = _("one of your backup codes")

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        """A backup code read as it is now, and matched exactly, before django-otp spends it.

        django-otp finds a backup code with a plain ``token_set.filter(token=token)``.
        On MySQL and MariaDB that read may be wrong twice over: under REPEATABLE READ
        it sees the snapshot of the transaction's first read, taken before the wait
        for the user's lock, where a code spent meanwhile is still there; and a
        case-insensitive collation finds ``alpha111`` for ``ALPHA111``. A locking
        read sees the latest rows, and the comparison is made here. A code that is
        not one of the device's fails as django-otp fails it: one more throttle step.
        """
        device = choice.device
        token = data["token"]
        token_set = getattr(device, "token_set", None)
        if token_set is not None:
            codes = list(token_set.select_for_update().values_list("token", flat=True))
            if token not in codes:
                device.throttle_increment()
                return False
        return bool(device.verify_token(token))


def code_hint(choices: Sequence[Choice]) -> str:
    """What to type, for the code choices offered: backup codes only where the decision accepts them."""
    from django.utils.text import format_lazy
    from django.utils.translation import gettext

    sources = list(
        dict.fromkeys(str(c.factor.source_hint) for c in choices if isinstance(c.factor, CodeFactor))
    )
    if not sources:
        return ""
    if len(sources) == 1:
        text = sources[0]
    else:
        text = str(
            format_lazy(gettext("{items}, or {last}"), items=", ".join(sources[:-1]), last=sources[-1])
        )
    return text[0].upper() + text[1:] + "."
