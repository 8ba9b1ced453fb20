"""Backup codes: one set per user (django-otp static tokens); a new set replaces the old one."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils.translation import gettext
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

CODE_COUNT = 10


def replace(
    user: AbstractBaseUser, codes: Sequence[str] | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[str]:
    """Give ``user`` one new set of backup codes (random unless ``codes`` is given); return them.

    Every earlier code stops working in the same transaction.
    """
    new = list(codes or [StaticToken.random_token() for _ in range(CODE_COUNT)])
    with transaction.atomic(using=using):
        StaticDevice.objects.using(using).filter(user=user).delete()
        device = StaticDevice.objects.using(using).create(
            user=user, name=gettext("Backup codes"), confirmed=True
        )
        StaticToken.objects.using(using).bulk_create(StaticToken(device=device, token=code) for code in new)
    return new


def as_text(codes: Sequence[str], site: str) -> str:
    """The codes as the downloaded ``.txt`` file holds them."""
    lines = [
        gettext("Backup codes for %(site)s") % {"site": site},
        gettext("Each code works once. Keep them somewhere safe."),
        "",
        *codes,
        "",
    ]
    return "\n".join(lines)
