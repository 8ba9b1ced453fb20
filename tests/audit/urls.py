"""URLs for the audit tests: the admin, stepup's views, and protected views that count their calls."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from stepup import require_stepup
from tests.calls import CALLS


def _transfer_attributes(request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
    data = request.POST if request.method == "POST" else request.GET
    return {"amount": data.get("amount", "0"), "card_pin": data.get("card_pin", "")}


@require_stepup("payments.transfer", attributes=_transfer_attributes)
def transfer(request: HttpRequest) -> HttpResponse:
    CALLS.append("transfer")
    return HttpResponse("transferred")


@require_stepup("payments.refund")
def refund(request: HttpRequest) -> HttpResponse:
    CALLS.append("refund")
    return HttpResponse("refunded")


@require_stepup("reports.view")
def report(request: HttpRequest) -> HttpResponse:
    CALLS.append("report")
    return HttpResponse("report")


def plain(request: HttpRequest) -> HttpResponse:
    CALLS.append("plain")
    return HttpResponse("plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("stepup/", include("stepup.urls")),
    path("transfer/", transfer, name="transfer"),
    path("refund/", refund, name="refund"),
    path("report/", report, name="report"),
    path("plain/", plain, name="plain"),
]
