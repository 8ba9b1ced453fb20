"""Signals stepup sends, and the receivers that keep its state consistent.

Signals other code may hook (each sent with ``sender`` = the view or module):

- ``stepup_challenged(request, user, decision, action, attributes)``
- ``stepup_verified(request, user, factor, device)``
- ``stepup_failed(request, user, factor, device, locked)``
- ``stepup_denied(request, user, decision, action, attributes)``
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from stepup import store

stepup_challenged = Signal()
stepup_verified = Signal()
stepup_failed = Signal()
stepup_denied = Signal()


def bump_policy_version(using: str = "default") -> None:
    """Record a policy change: bump the version in this transaction, reload after commit."""
    from stepup.models import PolicySetState

    updated = PolicySetState.objects.using(using).filter(pk=1).update(version=F("version") + 1)
    if not updated:
        PolicySetState.objects.using(using).get_or_create(pk=1, defaults={"version": 1})
    store.invalidate()
    transaction.on_commit(store.invalidate, using=using)


_batched: ContextVar[bool] = ContextVar("stepup_policy_batch", default=False)


@contextmanager
def batched_policy_changes(using: str = "default") -> Iterator[None]:
    """Save many policies with one version bump at the end (``sync`` uses it)."""
    token = _batched.set(True)
    try:
        yield
    finally:
        _batched.reset(token)
    bump_policy_version(using)


@receiver(post_save, sender="stepup.Policy", dispatch_uid="stepup.policy_saved")
@receiver(post_delete, sender="stepup.Policy", dispatch_uid="stepup.policy_deleted")
def _policy_changed(sender: Any, using: str = "default", **kwargs: Any) -> None:
    if not _batched.get():
        bump_policy_version(using)


# --- receivers that keep grants honest (enforcement) ---------------------------


def _record_login(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """A login starts a fresh step-up state: the login time, and no grants."""
    from stepup import grants

    if request is not None and hasattr(request, "session"):
        grants.record_login(request)


def _device_deleted(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    """Removing a second-factor device voids every grant of its user, in every session.

    Done after commit, and only while the user exists: deleting a user
    cascades to their devices, and a grant epoch row created for a user being
    deleted would break that deletion.
    """
    from django_otp.models import Device

    if not isinstance(instance, Device):
        return
    user_id = getattr(instance, "user_id", None)
    if user_id is None:
        return

    def revoke() -> None:
        from django.contrib.auth import get_user_model

        from stepup import grants

        user = get_user_model()._default_manager.using(using).filter(pk=user_id).first()
        if user is not None:
            grants.revoke_all(user)

    transaction.on_commit(revoke, using=using)


def _connect_enforcement_receivers() -> None:
    from django.contrib.auth.signals import user_logged_in

    user_logged_in.connect(_record_login, dispatch_uid="stepup.record_login")
    post_delete.connect(_device_deleted, dispatch_uid="stepup.device_deleted")


_connect_enforcement_receivers()
