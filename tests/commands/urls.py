"""A small URLconf for the command tests: the admin plus two stepup-declared views."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path


def _view(request):
    return HttpResponse("ok")


def declared(action):
    def view(request):
        return HttpResponse("ok")

    view.stepup_action = action
    return view


urlpatterns = [
    path("admin/", admin.site.urls),
    path("billing/", declared("billing.update"), name="billing-update"),
    path("uncovered/", declared("brand.new"), name="brand-new"),
    path("plain/", _view, name="plain"),
    path("thing/<int:pk>/delete/", _view, name="thing-delete"),
]
