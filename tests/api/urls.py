"""The test project's URLs (the shop, its API, stepup) plus DRF views that record whether they ran."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.urlpatterns import format_suffix_patterns
from rest_framework.views import APIView

from stepup.permissions import StepUpPermission
from tests.calls import CALLS
from tests.urls import urlpatterns as shop_urlpatterns


class Guarded(APIView):
    """``stepup_action`` plus attributes from the request."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "things.change"

    def get_stepup_attributes(self, request: Request) -> dict[str, Any]:
        return {"amount": request.data.get("amount", request.query_params.get("amount", "0"))}

    def get(self, request: Request, format: str | None = None) -> Response:
        CALLS.append("guarded-get")
        return Response({"ran": "get"})

    def post(self, request: Request, format: str | None = None) -> Response:
        CALLS.append(f"guarded-post {request.data.get('amount')}")
        return Response({"ran": "post"}, status=201)


class ByMethod(APIView):
    """``get_stepup_action(request)`` wins over ``stepup_action``."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "never.used"

    def get_stepup_action(self, request: Request) -> str:
        return "things.read" if request.method == "GET" else "things.change"

    def get(self, request: Request) -> Response:
        CALLS.append("bymethod-get")
        return Response({})

    def delete(self, request: Request) -> Response:
        CALLS.append("bymethod-delete")
        return Response(status=204)


class UrlOnly(APIView):
    """No action: only the policies naming this route apply (as from DEFAULT_PERMISSION_CLASSES)."""

    permission_classes = [StepUpPermission]

    def get(self, request: Request) -> Response:
        CALLS.append("urlonly-get")
        return Response({})

    def post(self, request: Request) -> Response:
        CALLS.append("urlonly-post")
        return Response({})


class Unguarded(APIView):
    """A DRF view without StepUpPermission: the middleware enforces URL policies (session user only)."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        CALLS.append("unguarded-post")
        return Response({})


class BadAttributes(APIView):
    permission_classes = [StepUpPermission]
    stepup_action = "things.change"

    def get_stepup_attributes(self, request: Request) -> Any:
        return [("amount", 1)]

    def post(self, request: Request) -> Response:
        CALLS.append("bad-attributes")
        return Response({})


urlpatterns = [
    *shop_urlpatterns,
    *format_suffix_patterns(
        [
            path("t/guarded/", Guarded.as_view(), name="t-guarded"),
            path("t/bymethod/", ByMethod.as_view(), name="t-bymethod"),
            path("t/urlonly/", UrlOnly.as_view(), name="t-urlonly"),
        ]
    ),
    path("t/unguarded/", Unguarded.as_view(), name="t-unguarded"),
    path("t/bad-attributes/", BadAttributes.as_view(), name="t-bad-attributes"),
]
