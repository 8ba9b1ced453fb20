"""A fresh project's URLconf: login, stepup's URLs (device pages included) and one protected view."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.urls import include, path

from stepup import require_stepup


@require_stepup("records.change")
def change_records(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return HttpResponse("changed")
    return HttpResponse(
        '<!doctype html><title>Records</title><h1>Records</h1><form method="post">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
        "<button>Change records</button></form>"
    )


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("records/", change_records, name="records"),
    path("stepup/", include("stepup.urls")),
]
