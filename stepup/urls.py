from django.urls import path

from stepup import api, views
from stepup.enrolment import views as devices

app_name = "stepup"

urlpatterns = [
    path("verify/", views.verify, name="verify"),
    path("api/verify/", api.api_verify, name="api-verify"),
    path("api/status/", api.api_status, name="api-status"),
    path("api/decide/", api.api_decide, name="api-decide"),
    path("webauthn/begin/", api.webauthn_begin, name="webauthn-begin"),
    path("webauthn/complete/", api.webauthn_complete, name="webauthn-complete"),
    path("webauthn/register/", views.webauthn_register, name="webauthn-register"),
    path("webauthn/register/begin/", api.webauthn_register_begin, name="webauthn-register-begin"),
    path("webauthn/register/complete/", api.webauthn_register_complete, name="webauthn-register-complete"),
    path("devices/", devices.devices, name="devices"),
    path("devices/authenticator/", devices.authenticator, name="devices-authenticator"),
    path("devices/backup-codes/", devices.backup_codes_view, name="devices-backup-codes"),
    path("devices/email/", devices.email_view, name="devices-email"),
    path("devices/<path:device_id>/rename/", devices.rename, name="devices-rename"),
    path("devices/<path:device_id>/remove/", devices.remove, name="devices-remove"),
]
