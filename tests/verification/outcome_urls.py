"""Views for the tests of what happens after verification (tests/verification/test_outcome.py).

A form page and the POST-only view it posts to (an upload: a file can't be
presented again), a download, and views that name their attributes in
people's words through the decorator, the mixin and ``enforce()``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import include, path
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import View

from stepup import StepUpRequiredMixin, enforce, require_stepup
from tests.calls import CALLS

_FORM_PAGE = engines["django"].from_string(
    """<!doctype html><title>Upload</title>
{% for message in messages %}<p class="message">{{ message }}</p>{% endfor %}
<form method="post" action="/upload/" enctype="multipart/form-data">{% csrf_token %}
<input type="text" name="title" id="title"><input type="file" name="file" id="file">
<button type="submit">Upload</button></form>"""
)


_LOGIN_PAGE = engines["django"].from_string(
    """<!doctype html><title>Sign in</title>
<form method="post">{% csrf_token %}{{ form }}<input type="hidden" name="next" value="{{ next }}">
<button type="submit">Sign in</button></form>"""
)


class LoginView(auth_views.LoginView):
    """Django's login view on a page of its own (the demo's login template needs the demo's URLs)."""

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        return HttpResponse(_LOGIN_PAGE.render(context, self.request))


@require_GET
def form_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_FORM_PAGE.render({"messages": messages.get_messages(request)}, request))


@require_POST
@require_stepup("files.upload")
def upload(request: HttpRequest) -> HttpResponse:
    CALLS.append("upload")
    return HttpResponse(f"uploaded {request.FILES['file'].name}")


@require_POST
@require_stepup("files.upload", form_url="upload-form")
def upload_named(request: HttpRequest) -> HttpResponse:
    CALLS.append("upload_named")
    return HttpResponse("uploaded")


@require_GET
@require_stepup("reports.download", download=True)
def download(request: HttpRequest) -> HttpResponse:
    CALLS.append("download")
    response = HttpResponse("a,b\n1,2\n", content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="report.csv"'
    return response


def _group_iban(request: HttpRequest, attrs: Any) -> dict[str, str]:
    account = str(attrs.get("account", ""))
    return {
        "account": " ".join(account[i : i + 4] for i in range(0, len(account), 4)),
        "operation": {"grant": "Grant access", "revoke": "Revoke access"}.get(attrs.get("operation"), "?"),
        "password": "shown?",  # a secret name: redacted whatever display() says
        "invented": "not an attribute",  # ignored
    }


LABELS = {"account": "Destination account", "address": "Billing address", "operation": "Change"}


@require_POST
@require_stepup(
    "payments.transfer",
    attributes=lambda request, *a, **kw: {
        "account": request.POST.get("account", ""),
        "address": request.POST.get("address", ""),
        "operation": request.POST.get("operation", ""),
        "password": request.POST.get("password", ""),
    },
    labels=LABELS,
    display=_group_iban,
)
def labelled(request: HttpRequest) -> HttpResponse:
    CALLS.append("labelled")
    return HttpResponse("sent")


class LabelledMixinView(StepUpRequiredMixin, View):
    stepup_action = "payments.transfer"
    stepup_labels = LABELS

    def get_stepup_attributes(self) -> dict[str, Any]:
        return {"account": self.request.POST.get("account", "")}

    def get_stepup_display(self, attributes: Any) -> dict[str, str]:
        return _group_iban(self.request, attributes)

    def post(self, request: HttpRequest) -> HttpResponse:
        CALLS.append("mixin")
        return HttpResponse("sent")


@require_POST
def labelled_enforce(request: HttpRequest) -> HttpResponse:
    attrs = {"account": request.POST.get("account", "")}
    enforce(request, "payments.transfer", attrs, labels=LABELS, display=_group_iban)
    CALLS.append("enforce")
    return HttpResponse("sent")


urlpatterns = [
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("stepup/", include("stepup.urls")),
    path("files/", form_page, name="upload-form"),
    path("upload/", upload, name="upload"),
    path("upload/named/", upload_named, name="upload-named"),
    path("download/", download, name="download"),
    path("labelled/", labelled, name="labelled"),
    path("labelled/mixin/", LabelledMixinView.as_view(), name="labelled-mixin"),
    path("labelled/enforce/", labelled_enforce, name="labelled-enforce"),
]
