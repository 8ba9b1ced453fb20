"""URLs for the verification tests: stepup's, a login page and views that count their calls."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from stepup import require_stepup
from tests.calls import CALLS


def transfer(request: HttpRequest) -> HttpResponse:
    """Stands in for an action: records what it received."""
    if request.method == "POST":
        CALLS.append(dict(request.POST.lists()))
    return HttpResponse("transferred")


def _amount(request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"amount": request.POST.get("amount") or request.GET.get("amount") or "0"}


protected_transfer = require_stepup("payments.transfer", attributes=_amount)(transfer)

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("stepup/", include("stepup.urls")),
    path("pay/", transfer, name="transfer"),
    path("protected/pay/", protected_transfer, name="protected-transfer"),
]
