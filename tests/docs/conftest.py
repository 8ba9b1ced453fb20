"""Fixtures the documentation's test samples ask for by name (``client`` comes from pytest-django)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice


@pytest.fixture
def user(user, synced_policies):
    """The shared ``user``, in the finance group and with an authenticator app, as the samples expect."""
    user.groups.add(Group.objects.get_or_create(name="finance")[0])
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    return user
