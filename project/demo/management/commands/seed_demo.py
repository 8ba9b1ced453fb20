"""``manage.py seed_demo``: create (or reset) the demo's groups, users, devices and billing data."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, transaction

from project.demo.seed import (
    DemoUser,
    api_token_key,
    backup_codes,
    recovery_codes,
    seed,
    totp_secret,
    uses_allauth,
)
from stepup.models import Policy


class Command(BaseCommand):
    help = (
        "Create or reset the Acme Billing demo: groups finance, auditor, admins and the users "
        "alice, bob, carol and dave with fixed passwords and TOTP secrets (shown with -v 2). "
        "Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='The database to seed. Defaults to the "default" database.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        with transaction.atomic(using=using):
            users = seed(using)
        if options["verbosity"] >= 1:
            self._print_table(users)
        if options["verbosity"] >= 2:
            self._print_secrets(users)
        if options["verbosity"] >= 1:
            self._check_policies(using)

    def _print_table(self, users: list[DemoUser]) -> None:
        rows = [("username", "role", "password", "second factor")]
        rows += [(u.username, u.role, u.password, _factor(u)) for u in users]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        for user in users:
            if user.backup_codes:
                if uses_allauth():
                    codes = " ".join(recovery_codes(user.username))
                    self.stdout.write(f"\nallauth recovery codes for {user.username}: {codes}")
                else:
                    codes = " ".join(backup_codes(user.username))
                    self.stdout.write(f"\nBackup codes for {user.username}: {codes}")
        for user in users:
            if user.api_token:
                self.stdout.write(f"\nREST API token for {user.username}: {api_token_key(user.username)}")
        self.stdout.write(self.style.SUCCESS("\nDemo data ready. Sign in at /accounts/login/."))

    def _print_secrets(self, users: list[DemoUser]) -> None:
        self.stdout.write("\nTOTP secrets, to add the demo users to a real authenticator app:")
        for user in users:
            if user.totp:
                self.stdout.write(f"  {user.username}: {totp_secret(user.username)}")

    def _check_policies(self, using: str) -> None:
        if not Policy.objects.using(using).exists():
            self.stdout.write(
                self.style.WARNING(
                    "No step-up policies in the database yet, so every protected action asks "
                    "for a code. Load the demo's: .venv/bin/python manage.py stepup sync"
                )
            )


def _factor(user: DemoUser) -> str:
    if not user.totp:
        return (
            "none: enrolls on allauth's 2FA page" if uses_allauth() else "none: enrolls on the Security page"
        )
    return f"current TOTP code: .venv/bin/python manage.py demo_totp {user.username}"
