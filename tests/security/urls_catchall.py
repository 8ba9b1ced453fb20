"""The routing URLconf plus a catch-all at the root: any path at all reaches a view."""

from __future__ import annotations

from django.urls import re_path

from tests.security import views
from tests.security.urls import urlpatterns as routing_urlpatterns

urlpatterns = [
    *routing_urlpatterns,
    re_path(r"^(?P<rest>.*)$", views.catch_all, name="catch-all"),
]
