"""The shop's REST API (namespace ``api``): the billing and transfer actions for API clients."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.urlpatterns import format_suffix_patterns
from rest_framework.views import APIView

from stepup.openapi import stepup_responses
from stepup.permissions import StepUpPermission
from tests.shop.models import BILLING_FIELDS, BillingProfile, Transfer, normalize_account


class BillingSerializer(serializers.ModelSerializer):
    class Meta:
        model = BillingProfile
        fields = BILLING_FIELDS


class TransferSerializer(serializers.ModelSerializer):
    class Meta:
        model = Transfer
        fields = ["id", "amount", "account"]
        read_only_fields = ["id"]

    def validate_account(self, value: str) -> str:
        return normalize_account(value)


class BillingAPI(APIView):
    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "billing.update"

    @extend_schema(responses={200: BillingSerializer})
    def get(self, request: Request, format: str | None = None) -> Response:
        profile = BillingProfile.objects.filter(user=request.user).first()
        if profile is None:
            return Response({"detail": "No billing details yet."}, status=status.HTTP_404_NOT_FOUND)
        return Response(BillingSerializer(profile).data)

    @extend_schema(request=BillingSerializer, responses={200: BillingSerializer, **stepup_responses()})
    def put(self, request: Request, format: str | None = None) -> Response:
        return self._save(request, partial=False)

    @extend_schema(request=BillingSerializer, responses={200: BillingSerializer, **stepup_responses()})
    def patch(self, request: Request, format: str | None = None) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        profile = BillingProfile.objects.filter(user=request.user).first()
        serializer = BillingSerializer(profile, data=request.data, partial=partial and profile is not None)
        serializer.is_valid(raise_exception=True)
        serializer.save(user=request.user)
        return Response(serializer.data)


class TransfersAPI(APIView):
    """Sending a transfer is ``payments.transfer``, decided on the validated amount and account."""

    permission_classes = [IsAuthenticated, StepUpPermission]
    stepup_action = "payments.transfer"
    stepup_bind_request = True

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
        transfers = Transfer.objects.filter(user=request.user).order_by("-pk")[:20]
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
]
