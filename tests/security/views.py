"""Purpose-built views for the attacks: each records in ``CALLS`` that it ran, and how."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views import View
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from stepup import StepUpRequiredMixin, enforce, require_stepup
from stepup.permissions import StepUpPermission
from tests.calls import CALLS


def ran(name: str, request: HttpRequest) -> HttpResponse:
    CALLS.append(f"{name} {request.method}")
    return HttpResponse(f"ran {name}")


def edit(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """A function view that does its work for every method (as many do)."""
    return ran("edit", request)


def twice(request: HttpRequest) -> HttpResponse:
    """Mounted under two names and under no name (``tests.security.urls``)."""
    return ran("twice", request)


def catch_all(request: HttpRequest, rest: str = "") -> HttpResponse:
    return ran("catch-all", request)


@require_stepup("things.change")
def decorated(request: HttpRequest) -> HttpResponse:
    return ran("decorated", request)


def deep(request: HttpRequest) -> HttpResponse:
    """Enforces inside the view (``enforce()``), as the demo's device views do."""
    enforce(request, "things.change", {"where": "deep"})
    return ran("deep", request)


@require_stepup("things.change")
def crash(request: HttpRequest) -> HttpResponse:
    """Allowed, then fails: its transaction (``ATOMIC_REQUESTS``) rolls back."""
    ran("crash", request)
    raise RuntimeError("the view failed after the decision")


@require_stepup("things.pay", attributes=lambda request, *a, **kw: {"amount": request.POST.get("amount")})
def pay_then_notify(request: HttpRequest) -> HttpResponse:
    """Does its work, then enforces another action: a refusal there comes after the side effect."""
    ran("pay", request)
    enforce(request, "things.notify")
    return HttpResponse("paid and notified")


def _amount(request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"amount": request.POST.get("amount")}


@require_stepup("things.pay", attributes=_amount)
def pay_amount(request: HttpRequest) -> HttpResponse:
    """The contract's example: only the amount is an attribute; the payee is not bound."""
    return ran(f"pay {request.POST.get('amount')} to {request.POST.get('to')}", request)


@require_stepup("things.pay", attributes=_amount, bind_request=True)
def pay_bound(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """The same, with the whole request bound: a grant pays this very form."""
    return ran(f"pay {request.POST.get('amount')} to {request.POST.get('to')}", request)


def pay_in_code_then_notify(request: HttpRequest) -> HttpResponse:
    """No check before its code, no URL policy: it enforces both actions itself, working in between."""
    enforce(request, "things.pay", {"amount": request.POST.get("amount")})
    ran("pay-in-code", request)
    enforce(request, "things.notify")
    return HttpResponse("paid and notified")


def work_then_enforce(request: HttpRequest) -> HttpResponse:
    """Does its work first and only then enforces: the challenge comes after the side effect."""
    response = ran("work-then-enforce", request)
    enforce(request, "things.change")
    return response


@require_stepup("things.pay", attributes=lambda request, *a, **kw: {"amount": request.POST.get("amount")})
@require_stepup("things.notify")
def pay_and_notify(request: HttpRequest) -> HttpResponse:
    """Two checks before any code of its own runs."""
    return ran("pay-and-notify", request)


class ThingView(StepUpRequiredMixin, View):
    stepup_action = "things.change"

    def get(self, request: HttpRequest) -> HttpResponse:
        return ran("thing", request)

    def post(self, request: HttpRequest) -> HttpResponse:
        return ran("thing", request)


class ThingsApi(APIView):
    """A DRF view with a declared action."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "things.change"

    def get(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"things-api {request.method}")
        return Response({"ran": True})

    def post(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"things-api {request.method}")
        return Response({"ran": True}, status=201)


class BasicThingsApi(ThingsApi):
    """The same, for clients authenticated by HTTP Basic (the password in every request)."""

    authentication_classes = [BasicAuthentication]


class PayApi(APIView):
    """Hands the policy the client's ``amount`` as it came: a string, a number, a list, anything."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "things.pay"

    def get_stepup_attributes(self, request: Request) -> dict[str, Any]:
        return {"amount": request.data.get("amount")}

    def post(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"pay-api {request.method}")
        return Response({"ran": True}, status=201)


class BoundPayApi(PayApi):
    """The same, with the whole request bound: a grant pays this very body."""

    stepup_bind_request = True

    def post(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"pay-api {request.data.get('amount')} to {request.data.get('to')}")
        return Response({"ran": True}, status=201)


class UrlPolicyApi(APIView):
    """A DRF view guarded by URL-name policies only."""

    permission_classes = [IsAuthenticated, StepUpPermission]

    def get(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"url-api {request.method}")
        return Response({"ran": True})

    def post(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"url-api {request.method}")
        return Response({"ran": True}, status=201)


class PerMethodPermissionsApi(UrlPolicyApi):
    """Drops ``StepUpPermission`` for reads in ``get_permissions()`` (a common ViewSet idiom)."""

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "GET":
            return [IsAuthenticated()]
        return super().get_permissions()


NO_PERMISSIONS: list[type[BasePermission]] = [AllowAny]
