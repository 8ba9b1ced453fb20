"""The admin: policies with their history, every policy change, and the decision log.

- **Policies** (:class:`PolicyAdmin`, on ``SimpleHistoryAdmin``): where each came
  from, whether it differs from the policy files (the drift report of
  :mod:`stepup.sync`), and its history with field-by-field diffs. Adding,
  changing, reverting or deleting one is the declared action
  ``stepup.policies.change``, which the built-in policy
  ``stepup.builtin.policy-admin`` protects: every ``POST`` to these pages needs
  a recent second factor before anything is read from the form, let alone
  saved. Edits are validated by the policy-file loader (:mod:`stepup.forms`)
  and recorded with the admin user and the reason they give.
- **Policy changes** (:class:`PolicyChangeAdmin`): the history of every policy,
  deleted ones included, read-only.
- **Decision log** (:class:`DecisionLogAdmin`): read-only for everyone,
  superusers included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import connections, router, transaction
from django.db.models import JSONField, Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin
from simple_history.models import DeletedObject
from simple_history.template_utils import HistoricalRecordContextHelper

from stepup.context import SAFE_METHODS
from stepup.decorators import guard
from stepup.enforcement import enforce
from stepup.forms import PolicyForm
from stepup.i18n import unknown_language_message, unknown_languages
from stepup.models import DecisionLog, Policy
from stepup.policy.builtins import BUILTIN_POLICIES, DEFAULT_POLICIES, POLICY_ADMIN_ACTION
from stepup.policy.engine import DEFAULT_POLICY_ID
from stepup.policy.model import MATCH_KEYS, SPEC_FIELDS
from stepup.state import state
from stepup.sync import FileComparison, batched_policy_changes, file_comparison

HistoricalPolicy: type[Model] = Policy.history.model

"""Set on a request once the policy-admin step-up passed for it."""


# --- list filters ---------------------------------------------------------------------


class DiffersFromFilesFilter(admin.SimpleListFilter):
    title = _("differs from the files")
    parameter_name = "differs"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("yes", "no"):
            return queryset
        comparison = file_comparison(request)
        if comparison.error:
            return queryset.none()  # the files can't answer: show nothing rather than a wrong answer
        wanted = self.value() == "yes"
        ids = [row.pk for row in queryset if comparison.differs(row) is wanted]
        return queryset.filter(pk__in=ids)


class SourceFilter(admin.SimpleListFilter):
    title = _("source")
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("file", _("Policy files (sync)")),
            ("admin", _("Admin")),
            ("other", _("Other (shell, code)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "file":
            return queryset.exclude(source_file="")
        if self.value() == "admin":
            return queryset.filter(source_file="", source_user__isnull=False)
        if self.value() == "other":
            return queryset.filter(source_file="", source_user__isnull=True)
        return queryset


# --- history --------------------------------------------------------------------------


class PolicyHistoryHelper(HistoricalRecordContextHelper):
    """History diffs as an auditor reads them: JSON as JSON, no user shown as nobody."""

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        if isinstance(value, DeletedObject) and value.pk is None:
            return "-"  # simple-history would say "Deleted user (pk=None)"
        if isinstance(self.model._meta.get_field(change.field), JSONField) and not isinstance(value, str):
            return json.dumps(value, sort_keys=True, ensure_ascii=False)  # a plain description stays text
        return super().prepare_delta_change_value(change, value)


def history_source(record: Any) -> str:
    """Where a historical record came from, as :attr:`Policy.source` says it for a row."""
    if record.source_file:
        return f"{record.source_file}@{record.source_commit}" if record.source_commit else record.source_file
    return f"admin:{record.source_user}" if record.source_user_id else "unknown"


# --- the policy admin -----------------------------------------------------------------


class PolicyAdminForm(PolicyForm):
    """:class:`PolicyForm`, plus what ``stepup validate`` checks beyond the loader: known languages."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for code in unknown_languages(cleaned.get("description") or ""):
            self.add_error("description", f"description.{code}: {unknown_language_message(code)}")
        return cleaned


@admin.register(Policy)
class PolicyAdmin(SimpleHistoryAdmin):
    form = PolicyAdminForm
    list_display = ["policy_id", "decision", "targets", "mode", "enabled", "source_display"]
    list_display_links = ["policy_id"]
    list_filter = ["decision", "mode", "enabled", DiffersFromFilesFilter, SourceFilter]
    list_select_related = ["source_user"]
    search_fields = ["policy_id", "description", "actions", "urls", "source_file", "source_commit"]
    history_list_display = ["source"]
    # "Changed by" names the sync's file and commit for changes no admin user made (not "None").
    object_history_list_template = "stepup/admin/policy_history_list.html"
    readonly_fields = ["differs_from_files", "source_display", "updated_at"]
    fieldsets = [
        (None, {"fields": ["policy_id", "description", "decision", "max_age", "factors", "enabled", "mode"]}),
        (_("Match"), {"fields": list(MATCH_KEYS)}),
        (_("Conditions"), {"fields": ["when"]}),
        (_("Where it came from"), {"fields": ["source_display", "differs_from_files", "updated_at"]}),
        (_("Why"), {"fields": ["change_reason"]}),
    ]

    # -- list columns --

    def get_list_display(self, request: HttpRequest) -> Sequence[Any]:
        comparison = file_comparison(request)

        @admin.display(description=_("differs from the files"))
        def differs(obj: Policy) -> str:
            return comparison.describe(obj)

        return [*super().get_list_display(request), differs]

    @admin.display(description=_("actions / URLs"))
    def targets(self, obj: Policy) -> str:
        return "; ".join([*obj.actions, *(gettext("URL %(name)s") % {"name": name} for name in obj.urls)])

    @admin.display(description=_("source"))
    def source_display(self, obj: Policy) -> str:
        return obj.source

    @admin.display(description=_("differs from the files"))
    def differs_from_files(self, obj: Policy) -> str:
        if obj.pk is None:
            return "-"
        return FileComparison.load().describe(obj)

    def source(self, record: Any) -> str:
        """The history view's ``source`` column."""
        return history_source(record)

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> Any:
        return PolicyHistoryHelper(self.model, historical_record)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # nothing to explain: leave out the reason field
            return [
                (name, options) for name, options in fieldsets if "change_reason" not in options["fields"]
            ]
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "policy_id"] if obj is not None else fields  # the id is what sync matches on

    # -- step-up for every change --
    #
    # Every view of this admin that can write (add, change, delete, the
    # changelist's actions, simple-history's revert) calls require_stepup()
    # before anything else; the write methods below check again.

    def may_change_policies(self, request: HttpRequest) -> bool:
        return (
            self.has_add_permission(request)
            or self.has_change_permission(request)
            or self.has_delete_permission(request)
        )

    def require_stepup(
        self, request: HttpRequest, operation: str, object_id: str | None = None
    ) -> HttpResponse | None:
        """``None`` when the view may run; else the step-up (or deny) response to send instead.

        Safe methods pass. An unsafe request from a user who can't add, change
        or delete policies is refused with ``403`` (nothing to step up for);
        for the others the policies on ``stepup.policies.change`` must be met
        first (the built-in one always applies).
        """
        if request.method in SAFE_METHODS:
            return None
        if not self.may_change_policies(request):
            raise PermissionDenied
        refused = guard(request, POLICY_ADMIN_ACTION, self.stepup_attributes(operation, object_id))
        if refused is None:
            state(request).policy_admin_allowed = True
        return refused

    def stepup_attributes(self, operation: str, object_id: str | None) -> dict[str, str]:
        """What the verification page shows, and what ``attrs`` conditions may test.

        ``operation`` is ``add``, ``change``, ``delete``, ``revert`` or ``bulk``
        (the changelist's actions); ``policy`` is the policy's id.
        """
        attributes = {"operation": operation}
        if object_id is not None:
            pk = unquote(object_id)
            rows = Policy.objects.filter(pk=pk) if pk.isdigit() else Policy.objects.none()
            attributes["policy"] = rows.values_list("policy_id", flat=True).first() or pk
        return attributes

    def ensure_stepped_up(self, request: HttpRequest, operation: str) -> None:
        """Second line: never write without the step-up, whichever path led here."""
        if not state(request).policy_admin_allowed:
            enforce(request, POLICY_ADMIN_ACTION, {"operation": operation})
            state(request).policy_admin_allowed = True

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        refused = self.require_stepup(request, "add" if object_id is None else "change", object_id)
        return refused or super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        refused = self.require_stepup(request, "delete", object_id)
        return refused or super().delete_view(request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        refused = self.require_stepup(request, "bulk")
        return refused or super().changelist_view(request, extra_context)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        # simple-history saves a POST here for anyone who may merely *view* the history.
        if request.method not in SAFE_METHODS and not self.has_change_permission(request):
            raise PermissionDenied
        refused = self.require_stepup(request, "revert", object_id)
        return refused or super().history_form_view(request, object_id, version_id, extra_context)

    # -- writes: attributed, with a reason, one row at a time --

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        self.ensure_stepped_up(request, "change" if change else "add")
        obj.source_user = request.user  # type: ignore[assignment]
        obj.source_file = ""
        obj.source_commit = ""
        reason = str(form.cleaned_data.get("change_reason") or "").strip()
        obj._change_reason = reason or ("changed in the admin" if change else "added in the admin")  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)  # sets the history user

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        self.ensure_stepped_up(request, "delete")
        self._delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Policy]) -> None:
        """One ``delete()`` per row (a bulk delete would record no user or reason), one version bump."""
        self.ensure_stepped_up(request, "delete")
        using = router.db_for_write(Policy)
        with transaction.atomic(using=using), batched_policy_changes(using):
            for obj in queryset.select_related(None).select_for_update():
                self._delete(request, obj)

    @staticmethod
    def _delete(request: HttpRequest, obj: Policy) -> None:
        obj._history_user = request.user  # type: ignore[attr-defined]
        obj._change_reason = f"deleted in the admin by {request.user}"  # type: ignore[attr-defined]
        obj.delete()


# --- every policy change, deleted policies included ------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by those with the view permission; nobody, superusers included, can change a row."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HistoricalPolicy)
class PolicyChangeAdmin(ReadOnlyAdmin):
    list_display = [
        "history_date",
        "policy_link",
        "change_type",
        "history_user",
        "history_change_reason",
        "source",
        "changed_fields",
    ]
    list_filter = ["history_type", ("history_user", admin.RelatedOnlyFieldListFilter), "history_date"]
    list_select_related = ["history_user"]
    search_fields = ["policy_id", "history_change_reason", "source_file", "source_commit"]
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description=_("policy"), ordering="policy_id")
    def policy_link(self, record: Any) -> str:
        try:
            url = reverse("admin:stepup_policy_history", args=[record.id])
        except NoReverseMatch:  # pragma: no cover - PolicyAdmin is registered above
            return str(record.policy_id)
        return format_html('<a href="{}">{}</a>', url, record.policy_id)

    @admin.display(description=_("change"), ordering="history_type")
    def change_type(self, record: Any) -> str:
        return str(record.get_history_type_display())

    @admin.display(description=_("source"))
    def source(self, record: Any) -> str:
        return history_source(record)

    @admin.display(description=_("changed fields"))
    def changed_fields(self, record: Any) -> str:
        previous = record.prev_record
        if previous is None or record.history_type == "-":
            return "-"
        delta = record.diff_against(previous, included_fields=list(SPEC_FIELDS))
        return ", ".join(change.field for change in delta.changes) or "-"


# --- the decision log --------------------------------------------------------------


class ActionFilter(admin.SimpleListFilter):
    title = _("action")
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        logged = DecisionLog.objects.exclude(action="").order_by("action")
        actions = logged.values_list("action", flat=True).distinct()
        return [(a, a) for a in actions[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(action=value) if value else queryset


class PolicyFilter(admin.SimpleListFilter):
    """Rows whose ``policies`` list contains one policy id."""

    title = _("policy")
    parameter_name = "policy"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = set(Policy.objects.values_list("policy_id", flat=True))
        ids.update(spec.id for spec in (*BUILTIN_POLICIES, *DEFAULT_POLICIES))
        ids.add(DEFAULT_POLICY_ID)
        return [(i, i) for i in sorted(ids)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return policies_containing(queryset, value) if value else queryset


def policies_containing(queryset: QuerySet[Any], policy_id: str) -> QuerySet[Any]:
    """``queryset`` rows whose ``policies`` JSON list holds ``policy_id`` (on every database)."""
    if connections[queryset.db].features.supports_json_field_contains:
        return queryset.filter(policies__contains=[policy_id])
    # SQLite: match the quoted element in the stored JSON text; ids can't contain quotes.
    return queryset.filter(policies__icontains=json.dumps(policy_id))


@admin.register(DecisionLog)
class DecisionLogAdmin(ReadOnlyAdmin):
    # Six columns fit beside the admin's sidebars at 1280 px; the policy-set version and the
    # user agent are on each row's page. Long names wrap (stepup/admin.css) instead of
    # pushing columns out of sight.
    list_display = ["created_at", "what", "user_link", "target", "policy_list", "client_ip"]
    list_filter = [
        "event",
        "outcome",
        ("user", admin.RelatedOnlyFieldListFilter),
        ActionFilter,
        PolicyFilter,
        "created_at",
        "factor",
    ]
    search_fields = ["username", "action", "url_name", "path", "^client_ip"]
    list_per_page = 100
    show_full_result_count = False  # the log may hold millions of rows
    fields = (
        "created_at",
        "event",
        "outcome",
        "user",
        "username",
        "action",
        "url_name",
        "method",
        "path",
        "policies",
        "policy_version",
        "factor",
        "client_ip",
        "user_agent",
        "roles",
        "attrs",
        "facts",
        "detail",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["stepup/admin.css"]}

    @admin.display(description=gettext_lazy("when"), ordering="created_at")
    def created_at(self, row: DecisionLog) -> str:
        """The time, compact (``2026-12-04 18:39:12``, in the current time zone)."""
        return f"{timezone.localtime(row.created_at):%Y-%m-%d %H:%M:%S}" if row.created_at else "-"

    @admin.display(description=gettext_lazy("event"), ordering="event")
    def what(self, row: DecisionLog) -> str:
        """The event, with its outcome when that says more, and the factor used."""
        said = row.outcome in ("", row.event) or (row.event, row.outcome) in _SAME_THING
        text = row.event if said else f"{row.event}: {row.outcome}"
        return f"{text} ({row.factor})" if row.factor else text

    @admin.display(description=_("user"), ordering="username")
    def user_link(self, row: DecisionLog) -> str:
        if not row.username:
            return "-"
        return format_html('<a href="?{}">{}</a>', urlencode({"username": row.username}), row.username)

    @admin.display(description=_("action / URL"))
    def target(self, row: DecisionLog) -> str:
        if row.action or not row.url_name:
            return row.action or row.path
        return gettext("URL %(name)s") % {"name": row.url_name}

    @admin.display(description=_("policies"))
    def policy_list(self, row: DecisionLog) -> str:
        return ", ".join(_strings(row.policies)) or "-"


_SAME_THING = {("allowed", "allow"), ("challenged", "step_up"), ("denied", "deny"), ("shadow", "shadow")}
"""Events whose outcome says nothing more (the ``event`` column shows the event alone)."""


def _strings(value: Any) -> Iterable[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
