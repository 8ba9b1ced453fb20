"""Identity and origin: forged client IPs, headers that claim verification, other users' devices.

Nothing the client says about itself is believed: the client IP comes from
``REMOTE_ADDR`` (or ``X-Forwarded-For`` only from a trusted proxy), and a
verification exists only as a server-side grant of this user and this client.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup.models import DecisionLog, Grant, UserState
from stepup.policy.conditions import origin_readings
from stepup.policy.loader import load_files
from stepup.policy.suite import run_suite
from stepup.testing import stepup_verified
from tests.security import views
from tests.security.conftest import API_VERIFY, VERIFY, code, fresh_client
from tests.security.test_routing import BILLING, BILLING_EDIT, challenged
from tests.shop.models import BillingProfile, Transfer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced_policies")]

OFFICE_IP = "198.51.100.20"  # inside the demo's office range (reports-download-remote)
HOME_IP = "203.0.113.9"
SMALL_REPORT = "/reports/invoices.csv?rows=10"
LARGE_TRANSFER = {"amount": "5000.00", "account": "DE89370400440532013000"}


def got_report(response: Any) -> bool:
    return response.status_code == 200 and response.get("Content-Type", "").startswith("text/csv")


# --- the control ------------------------------------------------------------------------


def test_control_a_small_report_from_the_office_needs_no_second_factor(attacker: Client) -> None:
    assert got_report(attacker.get(SMALL_REPORT, REMOTE_ADDR=OFFICE_IP))
    assert not got_report(attacker.get(SMALL_REPORT, REMOTE_ADDR=HOME_IP))


# --- forged client IPs ------------------------------------------------------------------

FORGED_HEADERS = [
    {"HTTP_X_FORWARDED_FOR": OFFICE_IP},
    {"HTTP_X_FORWARDED_FOR": f"{OFFICE_IP}, {OFFICE_IP}"},
    {"HTTP_X_REAL_IP": OFFICE_IP},
    {"HTTP_FORWARDED": f"for={OFFICE_IP}"},
    {"HTTP_FORWARDED": f'for="{OFFICE_IP}";proto=https'},
    {"HTTP_CLIENT_IP": OFFICE_IP},
    {"HTTP_TRUE_CLIENT_IP": OFFICE_IP},
    {"HTTP_CF_CONNECTING_IP": OFFICE_IP},
    {"HTTP_X_CLUSTER_CLIENT_IP": OFFICE_IP},
]


@pytest.mark.parametrize("headers", FORGED_HEADERS)
def test_forged_ip_headers_from_an_untrusted_peer_are_ignored(attacker: Client, headers: Any) -> None:
    response = attacker.get(SMALL_REPORT, REMOTE_ADDR=HOME_IP, **headers)
    assert challenged(response) and not got_report(response)
    logged = DecisionLog.objects.get(event="challenged")
    assert logged.client_ip == HOME_IP  # the log keeps the real peer, not the claim


@pytest.mark.parametrize(
    "forwarded",
    [
        f"{OFFICE_IP}, {HOME_IP}",  # the attacker's claim, then what the proxy saw
        f"{OFFICE_IP}, {HOME_IP}, 10.0.0.7",  # ... through a second trusted hop
        f"{OFFICE_IP}:443",  # malformed: unknown, never the office
        f"[{OFFICE_IP}]",
        "198.051.100.020",
        "unknown",
        "",
        "10.0.0.7, 10.0.0.8",  # only trusted hops: unknown
        f"{OFFICE_IP},,{HOME_IP}",
    ],
)
def test_a_trusted_proxy_chain_yields_the_rightmost_untrusted_address(
    attacker: Client, settings: Any, forwarded: str
) -> None:
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    response = attacker.get(SMALL_REPORT, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert challenged(response) and not got_report(response)


def test_control_a_trusted_proxy_reporting_the_office_is_believed(attacker: Client, settings: Any) -> None:
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    assert got_report(attacker.get(SMALL_REPORT, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=OFFICE_IP))


def test_a_proxy_inside_the_office_range_does_not_make_its_clients_office_clients(
    attacker: Client, settings: Any
) -> None:
    """A trusted proxy that sends no client address: unknown, never the proxy's own (office) address."""
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["198.51.100.1/32"]}
    for headers in ({}, {"HTTP_X_REAL_IP": OFFICE_IP}, {"HTTP_FORWARDED": f"for={OFFICE_IP}"}):
        response = attacker.get(SMALL_REPORT, REMOTE_ADDR="198.51.100.1", **headers)
        assert challenged(response) and not got_report(response)


def test_a_forwarded_header_from_a_peer_outside_the_trusted_range_is_ignored(
    attacker: Client, settings: Any
) -> None:
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    response = attacker.get(SMALL_REPORT, REMOTE_ADDR="11.0.0.2", HTTP_X_FORWARDED_FOR=OFFICE_IP)
    assert challenged(response) and not got_report(response)


# --- IPv6 spellings of IPv4 addresses -------------------------------------------------------


def ipv6_spellings(ipv4: str) -> dict[str, str]:
    """IPv6 addresses that carry ``ipv4``: each must be held to the IPv4 CIDRs that hold ``ipv4``."""
    v4 = int(ipaddress.IPv4Address(ipv4))
    teredo_server = int(ipaddress.IPv4Address("192.0.2.45"))
    teredo = (
        (0x20010000 << 96)
        | (teredo_server << 64)
        | (0x8000 << 48)
        | (0xFFFF ^ 40000) << 32
        | (~v4 & 0xFFFFFFFF)
    )
    return {
        "compatible": f"::{ipv4}",
        "6to4": str(ipaddress.IPv6Address((0x2002 << 112) | (v4 << 80) | 1)),
        "nat64": f"64:ff9b::{ipv4}",
        "teredo": str(ipaddress.IPv6Address(teredo)),
    }


HOME_SPELLINGS = ipv6_spellings(HOME_IP)
OFFICE_SPELLINGS = ipv6_spellings(OFFICE_IP)
VIA = ["REMOTE_ADDR", "X-Forwarded-For"]


def from_address(address: str, via: str) -> dict[str, str]:
    """Request headers that make ``address`` the client IP, directly or through a trusted proxy."""
    if via == "REMOTE_ADDR":
        return {"REMOTE_ADDR": address}
    return {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"{OFFICE_IP}, {address}"}


@pytest.fixture
def home_range_denied(synced_policies: None, policy: Any, settings: Any) -> None:
    """An ``origin: {in: ...}`` policy, on top of the demo's: nobody may edit from the home range."""
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    policy("home-range-denied", urls=["edit"], when={"origin": {"in": ["203.0.113.0/24"]}}, decision="deny")


@pytest.mark.urls("tests.security.urls")
@pytest.mark.usefixtures("home_range_denied")
@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("spelling", [*HOME_SPELLINGS, "mapped"])
def test_an_ipv6_spelling_of_an_address_in_a_listed_range_is_in_it(
    attacker: Client, spelling: str, via: str
) -> None:
    address = {**HOME_SPELLINGS, "mapped": f"::ffff:{HOME_IP}"}[spelling]
    response = attacker.get("/t/edit/", **from_address(address, via))
    assert response.status_code == 403 and views.CALLS == []
    logged = DecisionLog.objects.get(event="denied").client_ip  # the address itself, not what it carries
    assert logged == (HOME_IP if spelling == "mapped" else str(ipaddress.ip_address(address)))


@pytest.mark.urls("tests.security.urls")
@pytest.mark.usefixtures("home_range_denied")
@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("address", [*ipv6_spellings("192.0.2.77").values(), "2001:db8::cb00:7109", "::1"])
def test_control_ipv6_addresses_outside_a_listed_range_are_outside(
    attacker: Client, address: str, via: str
) -> None:
    assert attacker.get("/t/edit/", **from_address(address, via)).status_code == 200
    assert views.CALLS == ["edit GET"]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("spelling", OFFICE_SPELLINGS)
def test_an_ipv6_spelling_of_an_office_address_does_not_earn_the_office_exemption(
    attacker: Client, settings: Any, spelling: str, via: str
) -> None:
    """``origin: {not_in: [office]}``: an address that only *carries* an office IPv4 is not the office.

    Anyone can write an IPv4 address into these IPv6 forms, so the exemption (the looser reading)
    never follows from one; only the IPv4-mapped form, which is how a dual-stack socket reports a
    real IPv4 peer, is that IPv4 address.
    """
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    response = attacker.get(SMALL_REPORT, **from_address(OFFICE_SPELLINGS[spelling], via))
    assert challenged(response) and not got_report(response)


@pytest.mark.parametrize("via", VIA)
def test_control_the_ipv4_mapped_spelling_of_an_office_address_is_the_office(
    attacker: Client, settings: Any, via: str
) -> None:
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    assert got_report(attacker.get(SMALL_REPORT, **from_address(f"::ffff:{OFFICE_IP}", via)))


@pytest.mark.parametrize("proxy", ipv6_spellings("10.0.0.2").values())
def test_an_ipv6_spelling_of_a_trusted_proxy_is_not_trusted(
    attacker: Client, settings: Any, proxy: str
) -> None:
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    response = attacker.get(SMALL_REPORT, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OFFICE_IP)
    assert challenged(response) and not got_report(response)


@pytest.mark.parametrize(
    ("address", "readings"),
    [
        ("203.0.113.9", ["203.0.113.9"]),
        ("::ffff:203.0.113.9", ["203.0.113.9"]),
        ("::203.0.113.9", ["::cb00:7109", "203.0.113.9"]),
        ("2002:cb00:7109:5::1", ["2002:cb00:7109:5::1", "203.0.113.9"]),
        ("64:ff9b::203.0.113.9", ["64:ff9b::cb00:7109", "203.0.113.9"]),
        (HOME_SPELLINGS["teredo"], [HOME_SPELLINGS["teredo"], "203.0.113.9"]),
        ("::", ["::"]),
        ("::1", ["::1"]),
        ("64:ff9b:1::cb00:7109", ["64:ff9b:1::cb00:7109"]),  # local-use NAT64: length unknown
        ("2001:db8::cb00:7109", ["2001:db8::cb00:7109"]),
    ],
)
def test_the_addresses_an_origin_condition_checks(address: str, readings: list[str]) -> None:
    assert [str(a) for a in origin_readings(ipaddress.ip_address(address))] == readings


SPELLING_POLICIES = """\
version: 1
policies:
  - id: home-range-denied
    match: {actions: [records.edit]}
    when: {origin: {in: ["203.0.113.0/24"]}}
    decision: deny
  - id: outside-the-office
    match: {actions: [records.edit]}
    when: {origin: {not_in: ["198.51.100.0/24"]}}
    decision: step_up
    max_age: 300
"""


def spelling_input(origin: str) -> dict[str, Any]:
    return {"action": "records.edit", "roles": ["authenticated"], "origin": origin, "verified": {"totp": 60}}


EXPECTED_FOR_SPELLINGS = [
    *((address, "deny") for address in HOME_SPELLINGS.values()),
    *((address, "allow") for address in OFFICE_SPELLINGS.values()),  # verified a minute ago: step-up met
    (f"::ffff:{OFFICE_IP}", "allow"),
    (f"::ffff:{HOME_IP}", "deny"),
]


def test_policy_tests_read_ipv6_spellings_as_requests_do(tmp_path: Any) -> None:
    tests = [
        {"name": f"{origin} -> {outcome}", "input": spelling_input(origin), "expect": {"decision": outcome}}
        for origin, outcome in EXPECTED_FOR_SPELLINGS
    ]
    path = tmp_path / "policies.yaml"
    path.write_text(SPELLING_POLICIES + "tests: " + json.dumps(tests) + "\n")
    result = run_suite(load_files([path]))
    assert [r.test.name for r in result.failed] == []
    office = {ipaddress.ip_address(r.test.input["origin"]): r.decision for r in result.results}
    for address in OFFICE_SPELLINGS.values():
        assert office[ipaddress.ip_address(address)].policies == (
            "outside-the-office",
        )  # applied: no office exemption


@pytest.mark.parametrize(("origin", "outcome"), EXPECTED_FOR_SPELLINGS)
def test_api_decide_reads_ipv6_spellings_as_requests_do(
    attacker: Client, auditor: Any, policy: Any, origin: str, outcome: str
) -> None:
    policy(
        "home-range-denied",
        actions=["records.edit"],
        when={"origin": {"in": ["203.0.113.0/24"]}},
        decision="deny",
    )
    policy("outside-the-office", actions=["records.edit"], when={"origin": {"not_in": ["198.51.100.0/24"]}})
    response = attacker.post("/stepup/api/decide/", spelling_input(origin), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["decision"]["outcome"] == outcome


# --- claims of verification -------------------------------------------------------------

CLAIMS = [
    {"HTTP_X_STEPUP_VERIFIED": "1"},
    {"HTTP_X_OTP_VERIFIED": "true"},
    {"HTTP_X_VERIFIED": "totp"},
    {"HTTP_X_MFA": "verified"},
    {"HTTP_X_AMR": "otp mfa"},
    {"HTTP_X_ACR": "urn:mace:incommon:iap:silver"},
    {"HTTP_AUTHORIZATION": 'Bearer acr="mfa", amr="otp"'},
    {"QUERY_STRING": "verified=totp&stepup=1&otp_verified=1&max_age=0"},
]


@pytest.mark.parametrize("claim", CLAIMS)
def test_headers_and_parameters_claiming_verification_change_nothing(attacker: Client, claim: Any) -> None:
    attacker.cookies["stepup_verified"] = "1"
    attacker.cookies["otp_device_id"] = "otp_totp.totpdevice/1"
    response = attacker.post(BILLING_EDIT, {**BILLING, "verified": "totp", "otp_device_id": "x"}, **claim)
    assert challenged(response)
    assert not BillingProfile.objects.exists()
    assert not Grant.objects.exists()


def test_django_otp_verification_alone_does_not_count_as_step_up(
    attacker: Client, user: Any, totp: TOTPDevice
) -> None:
    """A session django-otp marked verified at login (``otp_login``) has no step-up grant."""
    session = attacker.session
    session["otp_device_id"] = totp.persistent_id
    session.save()
    assert attacker.get("/").status_code == 200
    assert challenged(attacker.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


# --- anonymous and token clients ----------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/transfers/", "/api/transfers.json", "/transfers/"])
def test_anonymous_clients_cannot_transfer(client: Client, url: str) -> None:
    response = client.post(url, LARGE_TRANSFER)
    assert response.status_code in (302, 401, 403)
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/login/")
    assert not Transfer.objects.exists()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", API_VERIFY, {"token": "123456"}),
        ("get", "/stepup/api/status/?action=payments.transfer", None),
        ("post", "/stepup/api/decide/", {"action": "payments.transfer"}),
    ],
)
def test_anonymous_clients_get_nothing_from_the_stepup_api(method: str, url: str, body: Any) -> None:
    api = APIClient()
    response = getattr(api, method)(url, body, format="json") if body else api.get(url)
    assert response.status_code == 401
    assert not Grant.objects.exists() and not UserState.objects.exists()


def test_a_browser_verification_does_not_carry_over_to_a_stolen_api_token(
    attacker: Client, user: Any
) -> None:
    """The token's grants are the token's: the victim's browser session being verified gives it none."""
    token = Token.objects.create(user=user)
    with stepup_verified(attacker, user):
        thief = APIClient()
        thief.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        response = thief.post("/api/transfers/", {"amount": "50.00", "account": "DE89370400440532013000"})
        assert challenged(response)
    assert not Transfer.objects.exists()


def test_a_token_verification_does_not_carry_over_to_a_browser(user: Any, totp: TOTPDevice) -> None:
    token = Token.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 200
    browser = fresh_client(user)
    assert challenged(browser.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


def test_a_token_client_sending_a_session_cookie_of_another_user_gains_nothing(
    user: Any, other_user: Any, totp: TOTPDevice
) -> None:
    """Mallory's verified browser session plus Erin's stolen token: still nobody is verified as Erin."""
    TOTPDevice.objects.create(user=other_user, name="Mallory's phone", confirmed=True)
    mallory = APIClient()
    mallory.force_login(other_user)
    with stepup_verified(mallory, other_user):
        token = Token.objects.create(user=user)
        mallory.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        response = mallory.put("/api/billing/", BILLING, format="json")
    # SessionAuthentication wins: the request is Mallory's own, verified, and changes Mallory's billing.
    assert response.status_code in (200, 201)
    assert not BillingProfile.objects.filter(user=user).exists()


# --- devices that are not the user's to use -----------------------------------------------


@pytest.fixture
def mallory(client: Client, other_user: Any) -> Client:
    TOTPDevice.objects.create(user=other_user, name="Mallory's phone", confirmed=True)
    client.force_login(other_user)
    return client


@pytest.mark.parametrize("channel", ["form", "api"])
def test_another_users_device_with_its_valid_code_is_refused(
    mallory: Client, other_user: Any, totp: TOTPDevice, channel: str
) -> None:
    """Mallory knows Erin's device id and even a current code of it: it verifies nothing for her."""
    data = {"device": totp.persistent_id, "token": code(totp)}
    if channel == "form":
        response = mallory.post(VERIFY, data)
        assert response.status_code == 200 and b"can&#x27;t be used here" in response.content
    else:
        response = mallory.post(API_VERIFY, data, content_type="application/json")
        assert response.status_code == 400 and response.json()["code"] == "invalid_device"
    assert not Grant.objects.exists()
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 0 and totp.last_t == -1  # never checked, never spent
    assert challenged(mallory.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


def test_an_unconfirmed_device_verifies_nothing(attacker: Client, user: Any) -> None:
    """An enrollment the thief started (and so knows the secret of) is not a second factor yet."""
    pending = TOTPDevice.objects.create(user=user, name="Thief's phone", confirmed=False)
    for data in ({"device": pending.persistent_id, "token": code(pending)}, {"token": code(pending)}):
        response = attacker.post(VERIFY, data)
        assert response.status_code == 200
    assert not Grant.objects.exists()
    assert challenged(attacker.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


def test_a_device_deleted_after_the_challenge_verifies_nothing(attacker: Client, totp: TOTPDevice) -> None:
    refused = attacker.post(BILLING_EDIT, BILLING)
    assert challenged(refused)
    valid = code(totp)
    device_id = totp.persistent_id
    totp.delete()
    response = attacker.post(refused["Location"], {"device": device_id, "token": valid})
    assert response.status_code in (200, 403)
    assert not Grant.objects.exists()
    assert not BillingProfile.objects.exists()


def test_a_device_of_a_kind_the_policy_refuses_verifies_nothing_for_it(
    attacker: Client, user: Any, backup: StaticDevice
) -> None:
    """``access.modify`` accepts TOTP and WebAuthn only: a backup code is refused for it."""
    from django.contrib.auth.models import Group

    admins, _ = Group.objects.get_or_create(name="admins")
    user.groups.add(admins)
    target = {"user": "erin", "group": "finance", "op": "grant"}
    refused = attacker.post("/team/", target)
    assert challenged(refused)
    response = attacker.post(refused["Location"], {"device": backup.persistent_id, "token": "alpha111"})
    assert response.status_code == 200 and b"can&#x27;t be used here" in response.content
    assert backup.token_set.filter(token="alpha111").exists()  # not spent either
    # A generic verification with the backup code does not satisfy the TOTP-only policy either.
    generic = attacker.post(VERIFY, {"device": backup.persistent_id, "token": "alpha111"})
    assert generic.status_code == 303
    assert challenged(attacker.post("/team/", target))
    assert not user.groups.filter(name="finance").exists()


# --- second-factor secrets within the thief's reach -------------------------------------------


def test_a_stolen_session_cannot_activate_an_abandoned_enrollment(
    attacker: Client, user: Any, totp: TOTPDevice
) -> None:
    """An enrollment the user started and never finished is a second factor in waiting.

    The enrol page showed its secret; confirming it must need the same step-up as
    starting one, or a session thief turns it into a factor of their own.
    """
    abandoned = TOTPDevice.objects.create(user=user, name="Phone", confirmed=False)
    page = attacker.get("/stepup/devices/")
    assert page.status_code == 200
    response = attacker.post("/stepup/devices/authenticator/", {"step": "confirm", "token": code(abandoned)})
    assert challenged(response)
    abandoned.refresh_from_db()
    assert not abandoned.confirmed


def test_control_a_first_enrollment_needs_no_second_factor(client: Client, user: Any) -> None:
    """A user with no factor at all can't step up: enrolling the first one is not guarded (by design)."""
    client.force_login(user)
    assert client.post("/stepup/devices/authenticator/", {"step": "start"}).status_code == 302
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    data = {"step": "confirm", "token": code(pending)}
    assert client.post("/stepup/devices/authenticator/", data).status_code == 200  # with backup codes
    pending.refresh_from_db()
    assert pending.confirmed


@pytest.fixture
def staff_attacker(client: Client, django_user_model: Any) -> Client:
    """A stolen (or password-only) superuser session, with no second factor at hand."""
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")
    TOTPDevice.objects.create(user=root, name="Root's phone", confirmed=True)
    client.force_login(root)
    return client


def test_the_admin_does_not_show_a_totp_secret_without_step_up(
    staff_attacker: Client, totp: TOTPDevice
) -> None:
    for url in (
        f"/admin/otp_totp/totpdevice/{totp.pk}/change/",
        f"/admin/otp_totp/totpdevice/{totp.pk}/config/",
        f"/admin/otp_totp/totpdevice/{totp.pk}/qrcode/",
    ):
        response = staff_attacker.get(url)
        assert challenged(response), url
        assert totp.key.encode() not in response.content


def test_the_admin_does_not_show_backup_codes_without_step_up(
    staff_attacker: Client, backup: StaticDevice
) -> None:
    response = staff_attacker.get(f"/admin/otp_static/staticdevice/{backup.pk}/change/")
    assert challenged(response)
    assert b"alpha111" not in response.content


def test_the_admin_does_not_show_api_tokens_without_step_up(staff_attacker: Client, user: Any) -> None:
    """A token is a credential with grants of its own (tests/security/test_session.py)."""
    token = Token.objects.create(user=user)
    response = staff_attacker.get("/admin/authtoken/tokenproxy/")
    assert challenged(response)
    assert token.key.encode() not in response.content


# --- transaction attributes the client controls ----------------------------------------------

LARGE_ROWS = [
    "5000",
    "\uff15\uff10\uff10\uff10",  # full-width digits: int() reads 5000
    "5_000",  # int() reads 5000
    " 5000",
    "5000 ",
    "+5000",
    "05000",
    "5000\n",
]


@pytest.mark.parametrize("rows", LARGE_ROWS)
def test_a_large_report_cannot_pass_as_a_small_one(attacker: Client, user: Any, rows: str) -> None:
    """The view reads ``rows`` with ``int()``; whatever it reads as large, the policy must see as large.

    Verified 30 minutes ago: enough for a small report from home (an hour), not for a large one
    (15 minutes). A spelling the engine can't read as a number counts as holding (fail closed).
    """
    from django.db.models import F

    with stepup_verified(attacker, user):
        Grant.objects.update(verified_at=F("verified_at") - 1800)
        small = attacker.get("/reports/invoices.csv", {"rows": "10"}, REMOTE_ADDR=HOME_IP)
        assert got_report(small)  # the control
        response = attacker.get("/reports/invoices.csv", {"rows": rows}, REMOTE_ADDR=HOME_IP)
        assert challenged(response) or (response.status_code == 302 and "/reports/" in response["Location"])
        assert not got_report(response)


def test_a_repeated_parameter_is_read_the_same_by_policy_and_view(attacker: Client, user: Any) -> None:
    from django.db.models import F

    with stepup_verified(attacker, user):
        Grant.objects.update(verified_at=F("verified_at") - 1800)
        for query in ("rows=10&rows=5000", "rows=5000&rows=10&rows=5000"):
            response = attacker.get(f"/reports/invoices.csv?{query}", REMOTE_ADDR=HOME_IP)
            assert challenged(response) and not got_report(response)
