"""Acme Billing's pages. Thin: the flows live in ``teams`` and ``reports``; Security is stepup's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django.views.generic import TemplateView

from project.demo import dashboard, reports, teams, wording
from project.demo.forms import BillingProfileForm, DisplayNameForm, MembershipForm, TransferForm
from project.demo.models import BillingProfile, Transfer
from stepup import StepUpRequiredMixin, require_stepup
from stepup.enrolment.devices import has_confirmed_device

RECENT_TRANSFERS = 20
NO_SECOND_FACTOR_WARNING = "You have no second factor now. Sensitive actions will ask you to set one up."


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a view behind ``login_required``, for the type checker."""

    user: User


@login_required
@require_GET
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = {
        "cards": dashboard.cards_for(request),
        "has_second_factor": has_confirmed_device(request.user),
    }
    return render(request, "demo/home.html", context)


# Billing -------------------------------------------------------------------------------


@login_required
@require_GET
def billing(request: AuthenticatedHttpRequest) -> HttpResponse:
    profile = BillingProfile.objects.filter(user=request.user).first()
    context = {"profile": profile, "denied": dashboard.denied_change(request, "billing.update")}
    return render(request, "demo/billing.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup("billing.update", labels=wording.form_labels(BillingProfileForm))
def billing_update(request: AuthenticatedHttpRequest) -> HttpResponse:
    profile = BillingProfile.objects.filter(user=request.user).first()
    form = BillingProfileForm(request.POST or None, instance=profile)
    if _save_for_user(request, form):
        messages.success(request, "Billing details updated.")
        return redirect("demo:billing")
    return render(request, "demo/billing_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup("profile.update", labels={"first_name": "Display name"})
def profile_update(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Change the display name: low risk, so the policy also accepts the account password."""
    form = DisplayNameForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Display name updated.")
        return redirect("demo:home")
    return render(request, "demo/profile_form.html", {"form": form})


def _save_for_user(request: AuthenticatedHttpRequest, form: ModelForm) -> bool:
    """On a valid POST, save ``form``'s object as the signed-in user's; return whether it saved."""
    if request.method != "POST" or not form.is_valid():
        return False
    obj = form.save(commit=False)
    obj.user = request.user
    obj.save()
    return True


# Transfers -----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup(
    "payments.transfer",
    attributes=lambda request, *a, **kw: {
        "amount": request.POST.get("amount"),
        "account": request.POST.get("account"),
    },
    bind_request=True,  # a single-use grant approves this very form, every field of it
    labels=wording.TRANSFER_LABELS,
    display=wording.transfer,
)
def transfer(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TransferForm(request.POST or None)
    if _save_for_user(request, form):
        sent = form.instance
        messages.success(request, f"Sent €{sent.amount:,.2f} to {sent.account_display}.")
        return redirect("demo:transfer")
    transfers = Transfer.objects.filter(user=request.user)[:RECENT_TRANSFERS]
    return render(request, "demo/transfer.html", {"form": form, "transfers": transfers})


# Reports -------------------------------------------------------------------------------


@login_required
@require_GET
def reports_index(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = {"max_rows": reports.MAX_ROWS, "default_rows": reports.DEFAULT_ROWS}
    return render(request, "demo/reports.html", context)


@login_required
@require_GET
@require_stepup(
    "reports.download",
    attributes=lambda request, *a, **kw: {"rows": request.GET.get("rows", "100")},
    labels=wording.REPORT_LABELS,
    display=wording.report,
    download=True,  # after verifying, a page says so and starts the file
)
def report(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    rows = reports.parse_rows(request.GET.get("rows"))
    if rows is None:
        messages.error(request, "Enter the number of rows as a whole number above zero.")
        return redirect("demo:reports")
    response = StreamingHttpResponse(reports.csv_lines(rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="acme-invoices-{rows}.csv"'
    return response


# Team access ---------------------------------------------------------------------------


class AccessAdminRequiredMixin:
    """Everyone signed in may look; only access admins may change anything."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST" and not teams.can_manage_access(request.user):
            raise PermissionDenied("Only admins can change team access.")
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class AccessView(LoginRequiredMixin, AccessAdminRequiredMixin, StepUpRequiredMixin, TemplateView):
    # Signed in first, then the admin check, then step-up: a non-admin gets a plain 403
    # instead of being asked for a code for a change they may not make anyway.
    template_name = "demo/access.html"
    http_method_names = ["get", "post"]
    stepup_action = "access.modify"
    stepup_labels = wording.MEMBERSHIP_LABELS

    def get_stepup_attributes(self) -> dict[str, Any]:
        if self.request.method != "POST":
            return {}
        post = self.request.POST
        return {"op": post.get("op", ""), "user": post.get("user", ""), "group": post.get("group", "")}

    def get_stepup_display(self, attributes: Mapping[str, Any]) -> dict[str, str]:
        return wording.membership(attributes)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            rows=teams.membership_table(),
            groups=teams.MANAGED_GROUPS,
            can_manage=teams.can_manage_access(self.request.user),
            **kwargs,
        )

    def post(self, request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = MembershipForm(request.POST)
        if not form.is_valid():
            messages.error(request, "That change could not be made: unknown user or group.")
            return redirect("demo:access")
        user, group = form.cleaned_data["user"], form.cleaned_data["group"]
        grant = form.cleaned_data["op"] == "grant"
        if teams.set_membership(user, group, grant):
            verb = "added to" if grant else "removed from"
            messages.success(request, f"{user.get_username()} {verb} {group.name}.")
        else:
            messages.info(request, "Nothing to change.")
        return redirect("demo:access")
