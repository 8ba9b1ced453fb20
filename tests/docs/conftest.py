"""Fixtures the documentation's test samples ask for by name (``client`` comes from pytest-django)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import store
from stepup.conf import conf
from stepup.sync import load, sync


@pytest.fixture
def demo_policies(db):
    """The demo's policy file, synced as ``manage.py stepup sync`` would."""
    sync(load(conf.POLICY_FILES), reason="tests/docs")
    store.invalidate()
    yield
    store.invalidate()


@pytest.fixture
def user(django_user_model, demo_policies):
    """A finance user of the demo with an authenticator app, as the samples' ``user``."""
    finance, _ = Group.objects.get_or_create(name="finance")
    user = django_user_model.objects.create_user("erin", password="pw")
    user.groups.add(finance)
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    return user
