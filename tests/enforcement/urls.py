"""URLconf for the enforcement tests (``@pytest.mark.urls("tests.enforcement.urls")``)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.enforcement import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(success_url="/plain/"),
        name="password_change",
    ),
    path("stepup/", include("stepup.urls")),
    path("plain/", views.plain, name="plain"),
    path("unmatched/", views.unmatched, name="unmatched"),
    path("unnamed/", views.plain),
    path("billing/", views.billing, name="billing"),
    path("abilling/", views.abilling, name="abilling"),
    path("transfer/", views.transfer, name="transfer"),
    path("atransfer/", views.atransfer, name="atransfer"),
    path("reports/<str:report>/", views.report, name="report"),
    path("settings/<str:team>/", views.SettingsView.as_view(), name="settings"),
    path("asettings/<str:team>/", views.AsyncSettingsView.as_view(), name="asettings"),
    path("deep/", views.deep, name="deep"),
    path("deep-twice/", views.deep_twice, name="deep-twice"),
    path("api/", views.ApiView.as_view(), name="api"),
    path("api/guarded/", views.GuardedApiView.as_view(), name="api-guarded"),
    path("json/", views.json_view, name="json"),
]
