"""A URLconf for routing attacks: the test project's URLs plus views mounted in the ways attackers look for."""

from __future__ import annotations

from django.urls import include, path, re_path
from rest_framework.urlpatterns import format_suffix_patterns

from tests.security import views
from tests.urls import urlpatterns as shop_urlpatterns

urlpatterns = [
    *shop_urlpatterns,
    path("t/edit/", views.edit, name="edit"),
    path("t/twice/", views.twice, name="twice"),
    path("t/twice-again/", views.twice, name="twice-again"),  # the same view under a second name
    path("t/twice-unnamed/", views.twice),  # ... and under no name at all
    re_path(r"^t/[cC][iI]/[eE][dD][iI][tT]/$", views.edit, name="ci-edit"),  # any case
    path("t/files/<path:name>", views.edit, name="file"),
    path("t/decorated/", views.decorated, name="decorated"),
    path("t/deep/", views.deep, name="deep"),
    path("t/crash/", views.crash, name="crash"),
    path("t/pay/", views.pay_then_notify, name="pay"),
    path("t/pay-and-notify/", views.pay_and_notify, name="pay-and-notify"),
    path("t/pay-in-code/", views.pay_in_code_then_notify, name="pay-in-code"),
    path("t/pay-amount/", views.pay_amount, name="pay-amount"),
    path("t/pay-bound/", views.pay_bound, name="pay-bound"),
    path("t/pay-bound/<str:account>/", views.pay_bound, name="pay-bound-to"),
    path("t/api/pay-bound/", views.BoundPayApi.as_view(), name="pay-bound-api"),
    path("t/thing/", views.ThingView.as_view(), name="thing"),
    path("t/work-then-enforce/", views.work_then_enforce, name="work-then-enforce"),
    *format_suffix_patterns(
        [
            path("t/api/things/", views.ThingsApi.as_view(), name="things-api"),
            path("t/api/basic-things/", views.BasicThingsApi.as_view(), name="basic-things-api"),
            path("t/api/url/", views.UrlPolicyApi.as_view(), name="url-api"),
            path("t/api/per-method/", views.PerMethodPermissionsApi.as_view(), name="per-method-api"),
            path(
                "t/api/open/",
                views.UrlPolicyApi.as_view(permission_classes=views.NO_PERMISSIONS),
                name="open-api",
            ),
        ]
    ),
    path("t/api/pay/", views.PayApi.as_view(), name="pay-api"),
    path("nested/", include([path("edit/", views.edit, name="nested-edit")])),
]
