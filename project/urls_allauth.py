"""The demo's URLs with allauth's (``/accounts/…``: the 2FA pages) for ``project.settings_allauth``.

The demo's own sign-in page stays first, so both demos sign in alike.
"""

from django.urls import include, path

from project.urls import urlpatterns as demo_urlpatterns

urlpatterns = [*demo_urlpatterns, path("accounts/", include("allauth.urls"))]
