"""The demo's URLs plus three minimal views, so that a request's cost is the stack's, not a template's."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from project.urls import urlpatterns as demo_urlpatterns
from stepup import require_stepup


def open_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def protected_bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


protected = require_stepup("bench.protected")(protected_bare)

urlpatterns = [
    path("bench/open/", open_view, name="bench-open"),
    path("bench/protected/", protected, name="bench-protected"),
    path("bench/protected-bare/", protected_bare, name="bench-protected-bare"),
    *demo_urlpatterns,
]
