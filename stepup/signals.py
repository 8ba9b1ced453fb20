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
