from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from project.demo.teams import MANAGED_GROUPS
from stepup import store
from stepup.conf import conf
from stepup.enrolment.totp import current_code as current_totp_code
from stepup.sync import load, sync


@pytest.fixture(autouse=True)
def demo_policies(db):
    """The demo's policy file, synced into the test database as ``manage.py stepup sync`` would."""
    sync(load(conf.POLICY_FILES), reason="tests/demo")
    store.invalidate()
    yield
    store.invalidate()


@pytest.fixture
def groups(db) -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in MANAGED_GROUPS}


@pytest.fixture
def make_user(django_user_model, groups) -> Callable[..., object]:
    def make(username: str = "erin", *group_names: str, **extra: object):
        user = django_user_model.objects.create_user(username, password="pw", **extra)
        user.groups.set(groups[name] for name in group_names)
        return user

    return make


@pytest.fixture
def user(make_user):
    return make_user("erin", "finance")


@pytest.fixture
def totp_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)


@pytest.fixture
def logged_in(client: Client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def code() -> Callable[[TOTPDevice], str]:
    """The current code of a device, as its authenticator app would show it."""

    def current(device: TOTPDevice) -> str:
        device.refresh_from_db()
        return current_totp_code(device)

    return current
