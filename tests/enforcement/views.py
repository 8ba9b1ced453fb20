"""Views for the enforcement tests; each records that it ran in ``CALLS``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View
from rest_framework.response import Response
from rest_framework.views import APIView

from stepup import StepUpRequiredMixin, enforce, require_stepup
from tests.calls import CALLS


def _ran(name: str) -> HttpResponse:
    CALLS.append(name)
    return HttpResponse(f"ran {name}")


def plain(request: HttpRequest) -> HttpResponse:
    return _ran("plain")


def unmatched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nothing to see")


@require_stepup("billing.update")
def billing(request: HttpRequest) -> HttpResponse:
    return _ran("billing")


@require_stepup("billing.update")
async def abilling(request: HttpRequest) -> HttpResponse:
    return _ran("abilling")


def transfer_attributes(request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"amount": request.POST.get("amount"), "to": request.POST.get("to")}


@require_stepup("payments.transfer", attributes=transfer_attributes)
def transfer(request: HttpRequest) -> HttpResponse:
    return _ran(f"transfer {request.POST.get('amount')} to {request.POST.get('to')}")


@require_stepup("payments.transfer", attributes=transfer_attributes)
async def atransfer(request: HttpRequest) -> HttpResponse:
    return _ran(f"atransfer {request.POST.get('amount')} to {request.POST.get('to')}")


@require_stepup("reports.view", attributes=lambda request, report: {"report": report})
def report(request: HttpRequest, report: str) -> HttpResponse:
    return _ran(f"report {report}")


class SettingsView(StepUpRequiredMixin, View):
    stepup_action = "access.modify"

    def get_stepup_attributes(self) -> dict[str, Any]:
        return {"team": self.kwargs.get("team", "")}

    def get(self, request: HttpRequest, team: str) -> HttpResponse:
        return _ran(f"settings {team}")

    def post(self, request: HttpRequest, team: str) -> HttpResponse:
        return _ran(f"settings-post {team}")


class AsyncSettingsView(StepUpRequiredMixin, View):
    stepup_action = "access.modify"

    async def get(self, request: HttpRequest, team: str) -> HttpResponse:
        return _ran(f"asettings {team}")


def deep(request: HttpRequest) -> HttpResponse:
    """Enforces deep inside, after doing harmless work first."""
    CALLS.append("deep entered")
    enforce(request, "reports.download", {"rows": request.GET.get("rows", request.POST.get("rows"))})
    return _ran("deep")


def deep_twice(request: HttpRequest) -> HttpResponse:
    enforce(request, "reports.download", {"rows": "10"})
    enforce(request, "reports.download", {"rows": "10"})
    return _ran("deep twice")


class StepUpPermission:
    """Stands in for stepup.permissions.StepUpPermission (matched by dotted path)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        enforce(request, view.stepup_action, {})
        return True

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return True


StepUpPermission.__module__ = "stepup.permissions"


class ApiView(APIView):
    """A DRF view with no step-up of its own: only URL policies apply (via the middleware)."""

    permission_classes: list[Any] = []

    def get(self, request: Any) -> Response:
        CALLS.append("api")
        return Response({"ok": True})

    def post(self, request: Any) -> Response:
        CALLS.append("api-post")
        return Response({"ok": True})


class GuardedApiView(ApiView):
    permission_classes = [StepUpPermission]
    stepup_action = "api.guarded"


def json_view(request: HttpRequest) -> JsonResponse:
    CALLS.append("json")
    return JsonResponse({"ok": True})
