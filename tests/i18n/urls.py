"""URLs for the translation tests: stepup's, a login page, and actions that step up or are denied."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from stepup import require_stepup


@require_stepup("i18n.pay", attributes=lambda request, *a, **kw: {"amount": request.POST.get("amount", "0")})
def pay(request: HttpRequest) -> HttpResponse:
    return HttpResponse("paid")


@require_stepup("i18n.close")
def close(request: HttpRequest) -> HttpResponse:
    return HttpResponse("closed")


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("stepup/", include("stepup.urls")),
    path("pay/", pay, name="pay"),
    path("close/", close, name="close"),
]
