"""A small URLconf for the command tests: the admin, stepup-declared views, views limited to some methods."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from django.views import View
from django.views.decorators.http import require_POST, require_safe


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


urlpatterns = [
    path("admin/", admin.site.urls),
    path("billing/", declared("billing.update"), name="billing-update"),
    path("uncovered/", declared("brand.new"), name="brand-new"),
    path("plain/", _view, name="plain"),
    path("thing/<int:pk>/delete/", _view, name="thing-delete"),
    path("post-only/", post_only, name="post-only"),
    path("reads-only/", reads_only, name="reads-only"),
    path("post-and-delete/", PostAndDelete.as_view(), name="post-and-delete"),
]
