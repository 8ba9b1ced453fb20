"""Fixtures of the demo's tests (``tests/demo/``, run on ``tests.demo.settings`` by tests/test_demo.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group

from project.demo.teams import MANAGED_GROUPS
from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def _demo_policies(synced_policies: None) -> None:
    """Every demo test runs with the demo's policy file synced, as ``make demo`` leaves it."""


@pytest.fixture
def groups(db) -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in MANAGED_GROUPS}


@pytest.fixture
def make_user(django_user_model, groups) -> Callable[..., object]:
    """``make_user("name", "group", ...)``: a demo member in those groups, password :data:`PASSWORD`."""

    def make(username: str, *group_names: str, **extra: object):
        user = django_user_model.objects.create_user(username, password=PASSWORD, **extra)
        user.groups.set(groups[name] for name in group_names)
        return user

    return make


@pytest.fixture
def user(user, groups):
    """The shared ``user`` (erin), in the demo's finance group."""
    user.groups.add(groups["finance"])
    return user
