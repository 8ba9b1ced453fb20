"""Fixtures shared by every test folder; a folder's own conftest.py may override them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup.models import Policy


@pytest.fixture
def totp(user: Any) -> TOTPDevice:
    """A confirmed authenticator app of ``user`` (each folder defines its own ``user``)."""
    return TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)


@pytest.fixture
def auditor(user: Any) -> Any:
    """``user``, allowed to query the decision service (``stepup.query_decision``)."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        Permission.objects.get(codename="query_decision", content_type__app_label="stepup")
    )
    return user


@pytest.fixture
def policy(db: Any) -> Callable[..., Policy]:
    """``policy("id", actions=[...], max_age=300, ...)``: store a policy row (the version bumps)."""

    def make(policy_id: str, **fields: Any) -> Policy:
        fields.setdefault("decision", "step_up")
        if fields["decision"] == "step_up":
            fields.setdefault("max_age", 300)
        return Policy.objects.create(policy_id=policy_id, **fields)

    return make
