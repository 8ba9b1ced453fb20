"""The demo's URLs plus minimal views, so that a request's cost is the stack's, not a template's.

The protected view exists four times, the same body behind each guard:
``@require_stepup`` (a valid grant in the session), django-otp's
``otp_required``, Django's ``login_required``, and nothing at all.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django_otp.decorators import otp_required

from project.urls import urlpatterns as demo_urlpatterns
from stepup import require_stepup


def open_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def protected_bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


protected = require_stepup("bench.protected")(protected_bare)
protected_otp = otp_required(protected_bare)
protected_login = login_required(protected_bare)

urlpatterns = [
    path("bench/open/", open_view, name="bench-open"),
    path("bench/protected/", protected, name="bench-protected"),
    path("bench/protected-otp/", protected_otp, name="bench-protected-otp"),
    path("bench/protected-login/", protected_login, name="bench-protected-login"),
    path("bench/protected-bare/", protected_bare, name="bench-protected-bare"),
    *demo_urlpatterns,
]
