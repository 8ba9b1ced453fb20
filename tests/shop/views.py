"""The shop's pages: each protected one is guarded the way a project would guard it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django.views.generic import TemplateView

from stepup import StepUpRequiredMixin, require_stepup
from tests.shop.models import BILLING_FIELDS, BillingProfile, Transfer, normalize_account

MANAGED_GROUPS = ("finance", "auditor", "admins")
MAX_ROWS = 200_000


class BillingForm(forms.ModelForm):
    class Meta:
        model = BillingProfile
        fields = BILLING_FIELDS


class TransferForm(forms.ModelForm):
    class Meta:
        model = Transfer
        fields = ["amount", "account"]

    def clean_account(self) -> str:
        return normalize_account(self.cleaned_data["account"])


class MembershipForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.all(), to_field_name="username")
    group = forms.ModelChoiceField(
        queryset=Group.objects.filter(name__in=MANAGED_GROUPS), to_field_name="name"
    )
    op = forms.ChoiceField(choices=[("grant", "Grant"), ("revoke", "Revoke")])


def _page(request: HttpRequest, title: str, form: forms.BaseForm | None = None) -> HttpResponse:
    return render(request, "shop/page.html", {"title": title, "form": form})


def _saved(request: HttpRequest, form: forms.ModelForm) -> bool:
    """On a valid POST, save ``form``'s object as the signed-in user's."""
    if request.method != "POST" or not form.is_valid():
        return False
    form.instance.user = request.user
    form.save()
    return True


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _page(request, "Home")


@login_required
@require_GET
def billing(request: HttpRequest) -> HttpResponse:
    return _page(request, "Billing")


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup("billing.update", labels={"card_last4": "Card (last 4 digits)"})
def billing_update(request: HttpRequest) -> HttpResponse:
    profile = BillingProfile.objects.filter(user=request.user).first()
    form = BillingForm(request.POST or None, instance=profile)
    if _saved(request, form):
        messages.success(request, "Billing details updated.")
        return redirect("shop:billing")
    return _page(request, "Edit billing", form)


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup("profile.update", labels={"first_name": "Display name"})
def profile_update(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        request.user.first_name = request.POST.get("first_name", "")  # type: ignore[union-attr]
        request.user.save(update_fields=["first_name"])  # type: ignore[union-attr]
        return redirect("shop:home")
    return _page(request, "Profile")


@login_required
@require_http_methods(["GET", "POST"])
@require_stepup(
    "payments.transfer",
    attributes=lambda request, *a, **kw: {
        "amount": request.POST.get("amount"),
        "account": request.POST.get("account"),
    },
    bind_request=True,
)
def transfer(request: HttpRequest) -> HttpResponse:
    form = TransferForm(request.POST or None)
    if _saved(request, form):
        return redirect("shop:transfer")
    return _page(request, "Transfers", form)


@login_required
@require_GET
def reports_index(request: HttpRequest) -> HttpResponse:
    return _page(request, "Reports")


def parse_rows(value: str | None) -> int | None:
    """The rows asked for, capped; ``None`` unless a positive integer (as ``int()`` reads it)."""
    try:
        rows = int(value if value is not None else 100)
    except ValueError:
        return None
    return min(rows, MAX_ROWS) if rows > 0 else None


@login_required
@require_GET
@require_stepup(
    "reports.download",
    attributes=lambda request, *a, **kw: {"rows": request.GET.get("rows", "100")},
    download=True,
)
def report(request: HttpRequest) -> HttpResponseBase:
    rows = parse_rows(request.GET.get("rows"))
    if rows is None:
        return redirect("shop:reports")
    lines = (f"INV-{i + 1:06d},{i * 7 % 1000}.00\n" for i in range(rows))
    response = StreamingHttpResponse(lines, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="invoices-{rows}.csv"'
    return response


class AccessView(LoginRequiredMixin, StepUpRequiredMixin, TemplateView):
    """Only admins may change memberships; they then step up (``access.modify``)."""

    template_name = "shop/page.html"
    http_method_names = ["get", "post"]
    stepup_action = "access.modify"
    extra_context = {"title": "Team"}

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        is_admin = user.is_superuser or user.groups.filter(name="admins").exists()  # type: ignore[union-attr]
        if request.method == "POST" and user.is_authenticated and not is_admin:
            raise PermissionDenied("Only admins can change team access.")
        return super().dispatch(request, *args, **kwargs)

    def get_stepup_attributes(self) -> dict[str, Any]:
        if self.request.method != "POST":
            return {}
        post = self.request.POST
        return {"op": post.get("op", ""), "user": post.get("user", ""), "group": post.get("group", "")}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = MembershipForm(request.POST)
        if form.is_valid():
            user, group = form.cleaned_data["user"], form.cleaned_data["group"]
            if form.cleaned_data["op"] == "grant":
                user.groups.add(group)
            else:
                user.groups.remove(group)
        return redirect("shop:access")
