"""The paths of stepup's own endpoints as the test projects mount them (``stepup/`` + ``stepup.urls``)."""

VERIFY = "/stepup/verify/"
API_VERIFY = "/stepup/api/verify/"
API_STATUS = "/stepup/api/status/"
API_DECIDE = "/stepup/api/decide/"
WEBAUTHN_BEGIN = "/stepup/webauthn/begin/"
WEBAUTHN_COMPLETE = "/stepup/webauthn/complete/"
