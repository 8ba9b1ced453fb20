"""``manage.py demo_totp USERNAME``: print the code a demo user's authenticator app would show."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from django_otp.plugins.otp_totp.models import TOTPDevice

from project.demo.seed import uses_allauth
from stepup.enrolment.totp import current_code


class Command(BaseCommand):
    help = (
        "Print the current TOTP code of a user's confirmed authenticator device. "
        "A code is accepted once per 30-second step; --offset 1 prints the next step's code, "
        "which the device also accepts now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--offset",
            type=int,
            default=0,
            choices=[0, 1],
            help="Time steps ahead (0 or 1).",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["username"], options["database"])
        if uses_allauth():
            self.stdout.write(self._allauth_code(user, options["database"], options["offset"]))
            return
        device = self._device(user, options["database"])
        self.stdout.write(current_code(device, offset=options["offset"]))

    def _user(self, username: str, using: str) -> Any:
        users = get_user_model()._default_manager.db_manager(using)
        try:
            return users.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            seed = ".venv/bin/python manage.py seed_demo"
            raise CommandError(f"No user {username!r}. Run '{seed}' first.") from None

    def _allauth_code(self, user: Any, using: str, offset: int) -> str:
        """The code of the user's allauth TOTP authenticator, computed by allauth's own functions."""
        import time

        from allauth.mfa import app_settings
        from allauth.mfa.models import Authenticator
        from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
        from allauth.mfa.utils import decrypt

        found = Authenticator.objects.using(using).filter(user=user, type=Authenticator.Type.TOTP).first()
        if found is None:
            raise CommandError(
                f"{user.username} has no allauth TOTP authenticator; add one at /accounts/2fa/."
            )
        counter = int(time.time()) // app_settings.TOTP_PERIOD + offset
        return format_hotp_value(hotp_value(decrypt(found.data["secret"]), counter))

    def _device(self, user: Any, using: str) -> TOTPDevice:
        username = user.username
        device = TOTPDevice.objects.using(using).filter(user=user, confirmed=True).first()
        if device is None:
            raise CommandError(f"{username} has no confirmed TOTP device; enroll one on the Security page.")
        return device
