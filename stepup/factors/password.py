"""Password re-entry (``password``): "sudo mode", through ``django.contrib.auth.authenticate``.

Custom authentication backends and the ``user_login_failed`` signal keep
working, as on the login page; the user ``authenticate`` returns must be the
user who is stepping up. Never implied: only a policy that lists
``password`` in ``factors`` accepts it. The password never reaches a log or
the decision log; every failure counts towards the per-user lockout like a
wrong code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.contrib.auth import authenticate
from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Choice, Factor

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.http import HttpRequest

    from stepup.flows.verification import Target


class PasswordFactor(Factor):
    kind = "password"
    label = _("Password")
    implied = False
    form_class = "stepup.forms.PasswordForm"
    secret_fields = ("password",)
    failure_field = "password"
    failure_message = _("That password is not correct.")

    def choices(self, user: AbstractBaseUser) -> list[Choice]:
        return [Choice(self, self.kind)] if user.has_usable_password() else []

    def selected_by(self, data: Mapping[str, Any]) -> bool:
        return "password" in data

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        found = authenticate(request, username=user.get_username(), password=data["password"])
        return found is not None and found.pk == user.pk
