"""Acme Billing's REST API: the billing and transfer actions of the pages, for API clients.

Guarded by the very policies that guard the pages (``billing.update``;
``payments.transfer`` with its ``amount`` and ``account``) through
:class:`stepup.permissions.StepUpPermission`. Clients authenticate with the
session (a browser; CSRF applies) or a token (``Authorization: Token …``).

Routes, under ``/api/`` (namespace ``api``; a ``.json`` suffix works too):

- ``billing/`` (``api:billing``): ``GET`` the profile; ``PUT``/``PATCH`` change it.
- ``transfers/`` (``api:transfers``): ``GET`` recent transfers; ``POST`` one.
- ``schema/`` (``api:schema``): the OpenAPI 3 description; ``docs/``: Swagger UI (offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.urlpatterns import format_suffix_patterns
from rest_framework.views import APIView

from project.demo import wording
from project.demo.models import BillingProfile, Transfer
from project.demo.validators import normalize_account
from stepup.openapi import stepup_responses
from stepup.permissions import StepUpPermission

RECENT_TRANSFERS = 20


class BillingProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = BillingProfile
        fields = ["company_name", "billing_email", "card_last4", "address", "updated_at"]
        read_only_fields = ["updated_at"]


class TransferSerializer(serializers.ModelSerializer):
    class Meta:
        model = Transfer
        fields = ["id", "amount", "account", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_account(self, value: str) -> str:
        return normalize_account(value)


class BillingAPI(APIView):
    """The signed-in user's billing details. Changing them is the ``billing.update`` action."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "billing.update"

    @extend_schema(responses={200: BillingProfileSerializer})
    def get(self, request: Request, format: str | None = None) -> Response:
        profile = BillingProfile.objects.filter(user=request.user).first()
        if profile is None:
            return Response({"detail": "No billing details yet."}, status=status.HTTP_404_NOT_FOUND)
        return Response(BillingProfileSerializer(profile).data)

    @extend_schema(
        request=BillingProfileSerializer,
        responses={200: BillingProfileSerializer, **stepup_responses()},
    )
    def put(self, request: Request, format: str | None = None) -> Response:
        return self._save(request, partial=False)

    @extend_schema(
        request=BillingProfileSerializer,
        responses={200: BillingProfileSerializer, **stepup_responses()},
    )
    def patch(self, request: Request, format: str | None = None) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        profile = BillingProfile.objects.filter(user=request.user).first()
        serializer = BillingProfileSerializer(
            profile, data=request.data, partial=partial and profile is not None
        )
        serializer.is_valid(raise_exception=True)
        serializer.save(user=request.user)
        return Response(serializer.data)


class TransfersAPI(APIView):
    """The signed-in user's transfers. Sending one is the ``payments.transfer`` action.

    The policies decide on the validated amount and account, exactly what is
    then sent: an invalid transfer is refused (``400``) before any step-up.
    """

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "payments.transfer"
    stepup_bind_request = True  # a single-use grant approves this very body, every field of it
    stepup_labels = wording.TRANSFER_LABELS  # how the verify page names the attributes

    def get_stepup_display(self, request: Request, attributes: Mapping[str, Any]) -> dict[str, str]:
        return wording.transfer(request, attributes)

    def get_stepup_attributes(self, request: Request) -> dict[str, Any]:
        if request.method != "POST":
            return {}
        data = self._validated(request).validated_data
        return {"amount": str(data["amount"]), "account": data["account"]}

    def _validated(self, request: Request) -> TransferSerializer:
        serializer: TransferSerializer | None = getattr(self, "_serializer", None)
        if serializer is None:
            serializer = TransferSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            self._serializer = serializer
        return serializer

    @extend_schema(responses={200: TransferSerializer(many=True)})
    def get(self, request: Request, format: str | None = None) -> Response:
        transfers = Transfer.objects.filter(user=request.user)[:RECENT_TRANSFERS]
        return Response(TransferSerializer(transfers, many=True).data)

    @extend_schema(request=TransferSerializer, responses={201: TransferSerializer, **stepup_responses()})
    def post(self, request: Request, format: str | None = None) -> Response:
        serializer = self._validated(request)
        serializer.save(user=request.user)
        return Response(serializer.data, status=status.HTTP_201_CREATED)


app_name = "api"

urlpatterns = [
    *format_suffix_patterns(
        [
            path("billing/", BillingAPI.as_view(), name="billing"),
            path("transfers/", TransfersAPI.as_view(), name="transfers"),
        ]
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
