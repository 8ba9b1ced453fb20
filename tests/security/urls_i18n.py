"""A URLconf with ``i18n_patterns``: every route also answers under each language prefix."""

from __future__ import annotations

from django.conf.urls.i18n import i18n_patterns
from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.security import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("stepup/", include("stepup.urls")),
    *i18n_patterns(
        path("t/edit/", views.edit, name="edit"),
        path("t/thing/", views.ThingView.as_view(), name="thing"),
        prefix_default_language=False,
    ),
]
