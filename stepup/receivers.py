"""The receivers that keep stepup's state consistent, connected by :meth:`StepUpConfig.ready`.

- A saved or deleted policy bumps the policy-set version, once per batch
  inside :func:`stepup.sync.batched_policy_changes`.
- A login starts a fresh step-up state; a logout deletes the session's grants.
- Deleting a second-factor device voids every grant of its user; so does
  deleting an ``allauth.mfa`` authenticator or regenerating its recovery codes.

Only :mod:`stepup.apps` imports this module, so importing stepup connects
nothing. The signals stepup sends are in :mod:`stepup.signals`.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django_otp.models import Device

from stepup import allauth_mfa, grants, sync
from stepup.models import Policy


def connect() -> None:
    """Connect every receiver; connecting twice changes nothing (each has a ``dispatch_uid``)."""
    post_save.connect(_policy_changed, sender=Policy, dispatch_uid="stepup.policy_saved")
    post_delete.connect(_policy_changed, sender=Policy, dispatch_uid="stepup.policy_deleted")
    user_logged_in.connect(_record_login, dispatch_uid="stepup.record_login")
    user_logged_out.connect(_forget_grants, dispatch_uid="stepup.forget_grants")
    # One receiver per device model: a post_delete receiver without a sender
    # would turn off Django's fast deletes for every model in the project.
    for model in apps.get_models():
        if issubclass(model, Device):
            post_delete.connect(
                _device_deleted, sender=model, dispatch_uid=f"stepup.device_deleted.{model._meta.label_lower}"
            )
    if allauth_mfa.is_installed():
        from allauth.mfa.models import Authenticator
        from allauth.mfa.signals import authenticator_reset

        uid = f"stepup.device_deleted.{allauth_mfa.MODEL_LABEL}"
        post_delete.connect(_authenticator_deleted, sender=Authenticator, dispatch_uid=uid)
        authenticator_reset.connect(_authenticator_reset, dispatch_uid="stepup.authenticator_reset")


def _policy_changed(sender: Any, using: str = "default", **kwargs: Any) -> None:
    sync.policy_changed(using)


def _record_login(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """A login starts a fresh step-up state: the login time, and no grants."""
    if request is not None and hasattr(request, "session"):
        grants.record_login(request)


def _forget_grants(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """A logout deletes the session's grants and pending challenges (not just the session)."""
    if request is not None and hasattr(request, "session"):
        grants.forget(request)


def _device_deleted(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    """Removing a second-factor device voids every grant of its user, in every session.

    Done after commit, and only while the user exists: deleting a user
    cascades to their devices, and a grant epoch row created for a user being
    deleted would break that deletion.
    """
    if isinstance(instance, Device):
        _revoke_after_commit(getattr(instance, "user_id", None), using)


def _authenticator_deleted(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    """An ``allauth.mfa`` authenticator removed: as a device removed."""
    _revoke_after_commit(getattr(instance, "user_id", None), using)


def _authenticator_reset(sender: Any, authenticator: Any = None, **kwargs: Any) -> None:
    """New ``allauth.mfa`` recovery codes: as backup codes replaced, the old grants go."""
    _revoke_after_commit(getattr(authenticator, "user_id", None), "default")


def _revoke_after_commit(user_id: Any, using: str) -> None:
    if user_id is None:
        return

    def revoke() -> None:
        user = get_user_model()._default_manager.using(using).filter(pk=user_id).first()
        if user is not None:
            grants.revoke_all(user)

    transaction.on_commit(revoke, using=using)
