from django.urls import path

from stepup import api, views

app_name = "stepup"

urlpatterns = [
    path("verify/", views.verify, name="verify"),
    path("api/verify/", api.api_verify, name="api-verify"),
    path("api/status/", api.api_status, name="api-status"),
    path("api/decide/", api.api_decide, name="api-decide"),
]
