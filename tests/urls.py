"""The demo project's URLs; tests add their own views through ``tests.views`` where needed."""

from project.urls import urlpatterns  # noqa: F401
