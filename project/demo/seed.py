"""The demo's users, groups and devices, created idempotently by ``manage.py seed_demo``.

Every secret here is deterministic and public on purpose, so the docs and the
browser tests can sign in. Never reuse any of it outside the demo.
"""

from __future__ import annotations

import hashlib
from base64 import b32encode
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission, User
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from project.demo.models import BillingProfile, Transfer
from project.demo.teams import MANAGED_GROUPS
from stepup.enrolment import backup_codes as backup_code_sets

AUTHENTICATOR_NAME = "Phone"
EMAIL_DEVICE_NAME = "Work email"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    groups: tuple[str, ...] = ()
    is_staff: bool = False
    is_superuser: bool = False
    stepup_viewer: bool = False
    totp: bool = True
    backup_codes: bool = False
    email_device: bool = False  # email codes to the user's address (printed to the demo's console)
    company: str = "Acme Corp"
    api_token: bool = False
    transfers: tuple[tuple[str, str], ...] = ()

    @property
    def password(self) -> str:
        return f"stepup-demo-{self.username}"


DEMO_USERS = (
    DemoUser(
        "alice",
        "finance",
        groups=("finance",),
        backup_codes=True,
        api_token=True,
        transfers=(
            ("250.00", "DE89370400440532013000"),
            ("4800.00", "FR1420041010050500013M02606"),
        ),
    ),
    DemoUser(
        "bob",
        "admin (superuser)",
        groups=("admins",),
        is_staff=True,
        is_superuser=True,
        email_device=True,
    ),
    DemoUser(
        "carol",
        "auditor (staff, view-only)",
        groups=("auditor",),
        is_staff=True,
        stepup_viewer=True,
    ),
    DemoUser("dave", "member, no second factor yet", totp=False),
)


def totp_key(username: str) -> str:
    """The fixed hex TOTP key of a demo user: the first 20 bytes of sha256("demo-" + username)."""
    return hashlib.sha256(f"demo-{username}".encode()).digest()[:20].hex()


def totp_secret(username: str) -> str:
    """The same key in base32, as an authenticator app takes it."""
    return b32encode(bytes.fromhex(totp_key(username))).decode("ascii")


def api_token_key(username: str) -> str:
    """The fixed REST API token of a demo user (40 hex digits, like DRF's own tokens)."""
    return hashlib.sha256(f"demo-api-token-{username}".encode()).hexdigest()[:40]


def backup_codes(username: str) -> list[str]:
    """Ten fixed backup codes, in the shape of ``StaticToken.random_token()``."""
    digests = (hashlib.sha256(f"demo-backup-{username}-{i}".encode()).digest() for i in range(10))
    return [b32encode(d[:5]).decode("ascii").lower() for d in digests]


def recovery_seed(username: str) -> str:
    """The fixed seed of a demo user's allauth recovery codes (allauth derives the ten codes from it)."""
    return hashlib.sha256(f"demo-recovery-{username}".encode()).hexdigest()


def recovery_codes(username: str) -> list[str]:
    """The ten allauth recovery codes of a demo user, as allauth derives them from :func:`recovery_seed`."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.utils import encrypt

    data = {"seed": encrypt(recovery_seed(username)), "used_mask": 0}
    return RecoveryCodes(Authenticator(type=Authenticator.Type.RECOVERY_CODES, data=data)).generate_codes()


def uses_allauth() -> bool:
    """Whether the demo runs on allauth.mfa (``project.settings_allauth``) rather than django-otp."""
    from django.apps import apps
    from django.conf import settings

    return apps.is_installed("allauth.mfa") and "allauth" in settings.STEPUP.get("FACTOR_SOURCES", ())


def seed(using: str = "default") -> list[DemoUser]:
    """Create or reset the demo data; running it again changes nothing but consumed codes."""
    for name in MANAGED_GROUPS:
        Group.objects.using(using).get_or_create(name=name)
    for spec in DEMO_USERS:
        _seed_user(spec, using)
    return list(DEMO_USERS)


def _seed_user(spec: DemoUser, using: str) -> None:
    user, _ = get_user_model().objects.db_manager(using).get_or_create(username=spec.username)
    user.email = f"{spec.username}@acme.example"
    user.is_staff = spec.is_staff
    user.is_superuser = spec.is_superuser
    if not user.check_password(spec.password):  # a new hash would sign the user out everywhere
        user.set_password(spec.password)
    user.save(using=using)
    user.groups.set(Group.objects.using(using).filter(name__in=spec.groups))
    user.user_permissions.set(_stepup_view_permissions(using) if spec.stepup_viewer else [])
    if uses_allauth():
        _seed_allauth(user, spec, using)
    else:
        _seed_django_otp(user, spec, using)
    if spec.api_token:
        _seed_api_token(user, api_token_key(spec.username), using)
    _seed_billing(user, spec, using)


def _seed_django_otp(user: User, spec: DemoUser, using: str) -> None:
    if spec.totp:
        TOTPDevice.objects.using(using).update_or_create(
            user=user,
            name=AUTHENTICATOR_NAME,
            defaults={"key": totp_key(spec.username), "confirmed": True},
        )
    if spec.backup_codes:
        _seed_backup_codes(user, backup_codes(spec.username), using)
    if spec.email_device:
        EmailDevice.objects.using(using).update_or_create(
            user=user, name=EMAIL_DEVICE_NAME, defaults={"email": None, "confirmed": True}
        )


def _seed_allauth(user: User, spec: DemoUser, using: str) -> None:
    """allauth authenticators: TOTP with the same secret, and recovery codes from a fixed seed.

    Used recovery codes are restored only when some were used, as backup codes are.
    """
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import decrypt, encrypt

    authenticators = Authenticator.objects.using(using).filter(user=user)
    if spec.totp:
        authenticators.update_or_create(
            user=user,
            type=Authenticator.Type.TOTP,
            defaults={"data": {"secret": encrypt(totp_secret(spec.username))}},
        )
    if spec.backup_codes:
        found = authenticators.filter(type=Authenticator.Type.RECOVERY_CODES).first()
        fresh = {"seed": encrypt(recovery_seed(spec.username)), "used_mask": 0}
        if found is None:
            Authenticator.objects.using(using).create(
                user=user, type=Authenticator.Type.RECOVERY_CODES, data=fresh
            )
        elif found.data.get("used_mask") or decrypt(found.data.get("seed", "")) != recovery_seed(
            spec.username
        ):
            found.data = fresh
            found.save(using=using, update_fields=["data"])


def _seed_backup_codes(user: User, codes: list[str], using: str) -> None:
    """Restore the fixed codes only when some were used: replacing them voids step-up grants."""
    tokens = StaticToken.objects.using(using).filter(device__user=user)
    if sorted(tokens.values_list("token", flat=True)) != sorted(codes):
        backup_code_sets.replace(user, codes, using=using)


def _seed_api_token(user: User, key: str, using: str) -> None:
    """The user's DRF token, for the demo's REST API (``Authorization: Token <key>``)."""
    from rest_framework.authtoken.models import Token

    Token.objects.using(using).filter(user=user).exclude(key=key).delete()
    Token.objects.using(using).get_or_create(key=key, defaults={"user": user})


def _stepup_view_permissions(using: str) -> list[Permission]:
    return list(
        Permission.objects.using(using).filter(content_type__app_label="stepup", codename__startswith="view_")
    )


def _seed_billing(user: User, spec: DemoUser, using: str) -> None:
    BillingProfile.objects.using(using).get_or_create(
        user=user,
        defaults={
            "company_name": spec.company,
            "billing_email": f"billing+{spec.username}@acme.example",
            "card_last4": "4242",
            "address": "1 Market Street\nSpringfield",
        },
    )
    for amount, account in spec.transfers:
        Transfer.objects.using(using).get_or_create(user=user, amount=Decimal(amount), account=account)
