"""Stored policies (with history), the policy-set version, per-user step-up state and the decision log."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from stepup.policy.model import DECISIONS, MATCH_KEYS, MODES, PolicySpec

_LABELS = {
    "step_up": _("step up"),
    "deny": _("deny"),
    "enforce": _("enforce"),
    "shadow": _("shadow"),
}


def _choices(values: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(value, _LABELS[value]) for value in values]


class DescriptionFormField(forms.JSONField):
    """A description as people type it: plain text, or a JSON object of texts by language.

    Text that starts with ``{`` is read as JSON and must be an object
    (``{"en": "…", "de": "…"}``); anything else is the text itself, so a plain
    description needs no quotes.
    """

    widget = forms.Textarea

    def to_python(self, value: Any) -> Any:
        if self.disabled or isinstance(value, dict):
            return value
        text = "" if value is None else str(value)
        if not text.lstrip().startswith("{"):
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValidationError(
                _('Write the description as plain text, or as a JSON object such as {"en": "…", "de": "…"}.'),
                code="invalid",
            )
        return parsed

    def bound_data(self, data: Any, initial: Any) -> Any:
        return initial if self.disabled else data

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False, indent=2)
        return "" if value is None else str(value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            new = self.to_python(data)
        except ValidationError:
            return True
        return json.dumps(initial, sort_keys=True) != json.dumps(new, sort_keys=True)


class DescriptionField(models.JSONField):
    """A policy's ``description``: a JSON string, or a JSON object of texts by language code."""

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": DescriptionFormField, **kwargs})


class Policy(models.Model):
    """One policy, as synced from a policy file or edited in the admin.

    The columns mirror the policy-file fields so that the history shows a
    diff field by field. Never write these rows with ``loaddata``,
    ``bulk_update`` or ``QuerySet.update()``: simple-history records nothing
    for raw or bulk writes. The one exception is :func:`stepup.sync.sync`,
    which writes in bulk and builds the history rows itself.
    """

    policy_id = models.CharField(_("id"), max_length=200, unique=True)
    description = DescriptionField(
        _("description"),
        default=str,
        blank=True,
        help_text=_('Plain text, or texts by language as JSON: {"en": "…", "de": "…"} ("en" is required).'),
    )
    actions = models.JSONField(_("actions"), default=list, blank=True)
    urls = models.JSONField(_("URL names"), default=list, blank=True)
    methods = models.JSONField(_("methods"), default=list, blank=True)
    when = models.JSONField(_("when"), default=dict, blank=True)
    decision = models.CharField(_("decision"), max_length=16, choices=_choices(DECISIONS), default="step_up")
    max_age = models.PositiveIntegerField(_("max age"), null=True, blank=True)
    factors = models.JSONField(_("factors"), default=list, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    mode = models.CharField(_("mode"), max_length=16, choices=_choices(MODES), default="enforce")

    source_file = models.CharField(_("source file"), max_length=500, blank=True)
    source_commit = models.CharField(_("source commit"), max_length=64, blank=True)
    source_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("source user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    # A text reason: sync's reasons (files, commit, change) and admins' reasons exceed 100 characters.
    # History rows go to the database the policy is written to, inside the same transaction.
    history = HistoricalRecords(
        history_change_reason_field=models.TextField(null=True), use_base_model_db=True
    )

    class Meta:
        ordering = ["policy_id"]
        verbose_name = _("policy")
        verbose_name_plural = _("policies")
        permissions = [("query_decision", _("Can query the step-up decision service"))]

    def __str__(self) -> str:
        return self.policy_id

    # The row, its history and the policy-set version bump (a post_save/post_delete receiver)
    # commit together or not at all, even when the caller is not in a transaction: a change
    # committed without its bump would go unnoticed by other processes.
    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic(using=kwargs.get("using") or router.db_for_write(type(self), instance=self)):
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        with transaction.atomic(using=kwargs.get("using") or router.db_for_write(type(self), instance=self)):
            return super().delete(*args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The row as a policy-file dict (the input of ``loader.validate_policy``)."""
        data: dict[str, Any] = {"id": self.policy_id, "description": self.description}
        match = {k: getattr(self, k) for k in MATCH_KEYS if getattr(self, k)}
        data["match"] = match
        if self.when:
            data["when"] = self.when
        data["decision"] = self.decision
        if self.decision == "step_up":
            data["max_age"] = self.max_age
            if self.factors:
                data["factors"] = self.factors
        data["enabled"] = self.enabled
        data["mode"] = self.mode
        return data

    def apply_spec(self, spec: PolicySpec) -> list[str]:
        """Copy a spec's fields onto the row; return the names of the fields that changed."""
        changed = []
        for name, value in spec_fields(spec).items():
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed.append(name)
        return changed

    @property
    def source(self) -> str:
        if self.source_file:
            return f"{self.source_file}@{self.source_commit}" if self.source_commit else self.source_file
        if self.source_user_id:
            return f"admin:{self.source_user}"
        return "unknown"


def spec_fields(spec: PolicySpec) -> dict[str, Any]:
    """A spec as the values of :class:`Policy`'s columns (JSON-compatible)."""
    data = spec.to_dict()
    return {
        "description": spec.description,
        "actions": list(spec.actions),
        "urls": list(spec.urls),
        "methods": list(spec.methods),
        "when": data.get("when", {}),
        "decision": spec.decision,
        "max_age": spec.max_age if spec.decision == "step_up" else None,
        "factors": list(spec.factors) if spec.decision == "step_up" else [],
        "enabled": spec.enabled,
        "mode": spec.mode,
    }


def new_generation() -> str:
    """A random id for one state of the policy set (see :class:`PolicySetState`)."""
    return secrets.token_hex(16)


class PolicySetState(models.Model):
    """A single row that every policy change updates in its own transaction.

    ``version`` counts the changes; ``generation`` is drawn afresh with each of
    them. The version alone can't identify a policy set: a flush or a restore
    from a backup sets it back, and later changes reach the same number with
    other policies. The pair can.
    """

    version = models.PositiveBigIntegerField(default=0)
    generation = models.CharField(max_length=32, default=new_generation, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("policy set state")
        verbose_name_plural = _("policy set states")

    def __str__(self) -> str:
        return f"policy set v{self.version}"


class UserState(models.Model):
    """Per-user step-up state that no new session or new IP can reset."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stepup_state"
    )
    failures = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    grant_epoch = models.PositiveIntegerField(default=0)
    """Bumped to invalidate every grant of every session (device removed, password changed)."""

    class Meta:
        verbose_name = _("user step-up state")
        verbose_name_plural = _("user step-up states")

    def __str__(self) -> str:
        return f"step-up state of {self.user}"


class DecisionLog(models.Model):
    """One challenge, verification, failure, lockout, denial or shadow decision. Never a token."""

    EVENTS = [
        ("challenged", _("challenged")),
        ("verified", _("verified")),
        ("failed", _("verification failed")),
        ("locked", _("locked out")),
        ("denied", _("denied")),
        ("shadow", _("shadow decision")),
        ("allowed", _("allowed")),
    ]

    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False, db_index=True)
    """When the event happened: an allowed row written in a later batch keeps its decision's time."""
    event = models.CharField(_("event"), max_length=16, choices=EVENTS, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(_("user name"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=200, blank=True, db_index=True)
    url_name = models.CharField(_("URL name"), max_length=200, blank=True)
    path = models.CharField(_("path"), max_length=500, blank=True)
    method = models.CharField(_("method"), max_length=10, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, blank=True)
    policies = models.JSONField(_("policies"), default=list, blank=True)
    policy_version = models.CharField(_("policy-set version"), max_length=64, blank=True)
    factor = models.CharField(_("factor"), max_length=16, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    roles = models.JSONField(_("roles"), default=list, blank=True)
    attrs = models.JSONField(_("attributes"), default=dict, blank=True)
    detail = models.TextField(_("detail"), blank=True)
    facts = models.JSONField(_("facts"), null=True, blank=True)
    """For ``allowed``/``challenged``/``denied`` rows: the rest of what the decision was made on
    (``url``, ``session_age``, ``verified``, ``one_shot``), so ``stepup plan --replay`` can
    decide it again. ``None`` on other events."""

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"])]
        verbose_name = _("decision log entry")
        verbose_name_plural = _("decision log")

    def __str__(self) -> str:
        target = self.action or self.url_name
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.event} {self.username} {target}"


class Grant(models.Model):
    """What one grant subject has proven: a verification of a factor kind, or a single-request grant.

    The *subject* is the server-side identity grants belong to (see :mod:`stepup.grants`): a
    random id kept in a browser's session, or a keyed hash of the step-up token a client
    authenticated by an ``Authorization`` header got from ``api-verify`` — never the
    credential. A row counts only for its ``user``, only while the
    user's grant epoch and password (``auth``, a digest of the session auth hash) are unchanged,
    and only until ``expires_at``. A single-request grant (``digest`` set) is used up by setting
    ``used_at`` with a conditional ``UPDATE``, so two parallel requests can't both use it.
    """

    subject = models.CharField(max_length=80)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, blank=True)
    """Empty for a verification; else the request digest a single-request grant is bound to."""
    verified_at = models.FloatField()
    """Unix time of the verification (floats: exact, and independent of ``USE_TZ``)."""
    expires_at = models.FloatField(db_index=True)
    used_at = models.FloatField(null=True, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    auth = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["subject", "user"])]
        verbose_name = _("grant")
        verbose_name_plural = _("grants")

    def __str__(self) -> str:
        what = "single-request grant" if self.digest else "verification"
        return f"{self.kind} {what} of user {self.user_id}"


class PendingChallenge(models.Model):
    """A step-up challenge waiting for its verification: what is being authorized, and where to go back.

    ``challenge_id`` is random and not guessable; ``data`` is the challenge dict of the
    enforcement/verification hand-off. It belongs to one grant subject (and user).
    """

    challenge_id = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=80, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    data = models.JSONField()
    created_at = models.FloatField()
    expires_at = models.FloatField(db_index=True)

    class Meta:
        verbose_name = _("pending challenge")
        verbose_name_plural = _("pending challenges")

    def __str__(self) -> str:
        target = self.data.get("action") or self.data.get("url_name")
        return f"challenge {self.challenge_id[:6]}… for {target}"
