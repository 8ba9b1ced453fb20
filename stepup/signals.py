"""Signals stepup sends, and the receivers that keep its state consistent.

Signals other code may hook. Each is sent once per event, after the event is
stored in the decision log (:mod:`stepup.audit`) and logged to the ``stepup``
logger; a receiver's exception propagates to the request, as with any Django
signal. Apart from ``request`` itself, no argument holds a submitted code.

``stepup_challenged(sender, request, user, decision, action, attributes)``
    An authenticated request needs a step-up (sent before the ``302`` to
    ``stepup:verify`` or the ``401``). ``sender``: the view being enforced
    (``request.resolver_match.func``), else the :mod:`stepup.enforcement`
    module. ``request``: the request (a DRF ``Request`` when enforced by
    ``StepUpPermission``). ``user``: ``request.user``. ``decision``: the
    :class:`stepup.Decision` (``outcome`` ``"step_up"``, ``max_age``,
    ``factors``, ``policies``, ``reasons``, ``version``). ``action``: the
    declared action, ``None`` for URL-name policies alone. ``attributes``: the
    transaction attributes the view supplied (as given, not redacted).
    Anonymous requests are sent to the login page without this signal.
``stepup_denied(sender, request, user, decision, action, attributes)``
    A ``deny`` policy refused the request (sent before the ``403``); the
    arguments are those of ``stepup_challenged``, ``decision.outcome`` is
    ``"deny"``. Sent for anonymous requests too (``user`` is then an
    ``AnonymousUser``).
``stepup_verified(sender, request, user, factor, device)``
    A second factor was verified. ``sender``:
    :func:`stepup.flows.verification.verify` (the HTML form and the JSON API
    alike). ``factor``: the factor kind (``"totp"``, ``"static"`` …).
    ``device``: the django-otp device that verified.
``stepup_failed(sender, request, user, factor, device, locked)``
    A verification attempt was refused: a wrong code, unusable input, a
    throttled device or the per-user lockout. ``factor`` and ``device`` are
    ``None`` when no device was chosen yet. ``locked`` is true while the
    per-user lockout is in force, including for the failure that started it.

Shadow-mode decisions and allowed requests are recorded in the decision log
and the ``stepup`` logger only; they send no signal.
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
    """Record a policy change: a new version and generation in this transaction; announce it after commit.

    Until the transaction commits, only this thread sees the change
    (:func:`stepup.store.note_uncommitted_change`); after commit, this process
    re-reads the version and every other process is told through the shared
    cache (:func:`stepup.store.change_committed`). The ``UPDATE`` also locks the
    version row, so concurrent changes are serialised and each gets its own version.
    """
    from stepup.models import PolicySetState, new_generation

    state = PolicySetState.objects.using(using).filter(pk=1)
    updated = state.update(version=F("version") + 1, generation=new_generation())
    if not updated:
        PolicySetState.objects.using(using).get_or_create(pk=1, defaults={"version": 1})

    def committed() -> None:
        store.change_committed(committed)

    store.note_uncommitted_change(using, committed)
    transaction.on_commit(committed, using=using)


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


def _forget_grants(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """A logout deletes the session's grants and pending challenges (not just the session)."""
    from stepup import grants

    if request is not None and hasattr(request, "session"):
        grants.forget(request)


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
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    user_logged_in.connect(_record_login, dispatch_uid="stepup.record_login")
    user_logged_out.connect(_forget_grants, dispatch_uid="stepup.forget_grants")
    # One receiver per device model: a post_delete receiver without a sender
    # would turn off Django's fast deletes for every model in the project.
    from django.apps import apps
    from django_otp.models import Device

    for model in apps.get_models():
        if issubclass(model, Device):
            post_delete.connect(
                _device_deleted, sender=model, dispatch_uid=f"stepup.device_deleted.{model._meta.label_lower}"
            )


_connect_enforcement_receivers()
