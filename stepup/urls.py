from django.urls import path

from stepup import views

app_name = "stepup"

urlpatterns = [
    path("verify/", views.verify, name="verify"),
    path("api/verify/", views.api_verify, name="api-verify"),
    path("api/status/", views.api_status, name="api-status"),
    path("api/decide/", views.api_decide, name="api-decide"),
]
