"""A small URLconf for the command tests: the admin, stepup-declared views, views limited to some methods."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from django.views import View
from django.views.decorators.http import require_POST, require_safe

import stepup
from stepup import enforce


def _view(request):
    return HttpResponse("ok")


def declared(action):
    def view(request):
        return HttpResponse("ok")

    view.stepup_action = action
    return view


@require_POST
def post_only(request):
    return HttpResponse("ok")


@require_safe
def reads_only(request):
    return HttpResponse("ok")


class PostAndDelete(View):
    def post(self, request):
        return HttpResponse("ok")

    def delete(self, request):
        return HttpResponse("ok")


EXPORT_ACTION = "reports.export"


def _guard_export(request):
    """A helper of the module that enforces for the view (as views often do)."""
    enforce(request, EXPORT_ACTION)


def pays_in_code(request):
    enforce(request, "payments.send", {"amount": request.POST.get("amount")})
    return HttpResponse("ok")


def exports_through_a_helper(request):
    _guard_export(request)
    return HttpResponse("ok")


class ArchivesInCode(View):
    def post(self, request):
        stepup.decide(request, "archive.purge")
        return HttpResponse("ok")


def computes_its_action(request):
    enforce(request, "dynamic." + request.GET.get("kind", "x"))  # can't be read: not reported
    return HttpResponse("ok")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("billing/", declared("billing.update"), name="billing-update"),
    path("uncovered/", declared("brand.new"), name="brand-new"),
    path("plain/", _view, name="plain"),
    path("thing/<int:pk>/delete/", _view, name="thing-delete"),
    path("post-only/", post_only, name="post-only"),
    path("reads-only/", reads_only, name="reads-only"),
    path("post-and-delete/", PostAndDelete.as_view(), name="post-and-delete"),
    path("pay/", require_POST(pays_in_code), name="pay-in-code"),
    path("export/", exports_through_a_helper, name="export-in-code"),
    path("archive/", ArchivesInCode.as_view(), name="archive-in-code"),
    path("dynamic/", computes_its_action, name="dynamic-in-code"),
]
