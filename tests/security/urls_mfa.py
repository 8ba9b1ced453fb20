"""stepup's URLs included under an instance namespace of the project's choosing (``mfa``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.security import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("mfa/", include("stepup.urls", namespace="mfa")),
    path("t/edit/", views.edit, name="edit"),
]
