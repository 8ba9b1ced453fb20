from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from project.demo.seed import backup_codes, totp_key, totp_secret

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, object]:
    users = get_user_model().objects.order_by("username")
    return {
        # The password hash too: a new one would sign the demo users out everywhere.
        "users": [(u.username, u.password, u.is_staff, u.is_superuser) for u in users],
        "groups": sorted(Group.objects.values_list("name", flat=True)),
        "memberships": sorted(users.values_list("username", "groups__name")),
        "totp": sorted(TOTPDevice.objects.values_list("user__username", "key", "confirmed")),
        "static": sorted(StaticToken.objects.values_list("device__user__username", "token")),
        "static_devices": sorted(StaticDevice.objects.values_list("pk", flat=True)),
    }


def test_seed_creates_users_groups_and_devices():
    output = seed()
    users = {u.username: u for u in get_user_model().objects.all()}
    assert set(users) == {"alice", "bob", "carol", "dave"}
    assert set(Group.objects.values_list("name", flat=True)) >= {"finance", "auditor", "admins"}
    assert list(users["alice"].groups.values_list("name", flat=True)) == ["finance"]
    assert users["bob"].is_superuser and users["bob"].is_staff
    assert users["carol"].is_staff and not users["carol"].is_superuser
    assert not users["dave"].is_staff and not users["dave"].groups.exists()
    for name in ("alice", "bob", "carol", "dave"):
        assert users[name].check_password(f"stepup-demo-{name}")
        assert f"stepup-demo-{name}" in output
    assert ".venv/bin/python manage.py demo_totp alice" in output


def test_seed_gives_everyone_but_dave_a_fixed_confirmed_totp_device():
    seed()
    devices = {d.user.username: d for d in TOTPDevice.objects.select_related("user")}
    assert set(devices) == {"alice", "bob", "carol"}
    assert all(d.confirmed for d in devices.values())
    assert devices["alice"].key == totp_key("alice")
    assert len(bytes.fromhex(totp_key("alice"))) == 20
    assert totp_key("alice") != totp_key("bob")
    assert f"secret={totp_secret('alice')}" in devices["alice"].config_url


def test_seed_shows_the_totp_secrets_when_asked():
    out = StringIO()
    call_command("seed_demo", verbosity=2, stdout=out)
    assert f"alice: {totp_secret('alice')}" in out.getvalue()
    assert "dave:" not in out.getvalue()


def test_seed_is_quiet_at_verbosity_0():
    out = StringIO()
    call_command("seed_demo", verbosity=0, stdout=out)
    assert out.getvalue() == ""


def test_seed_gives_alice_ten_backup_codes():
    seed()
    tokens = StaticToken.objects.filter(device__user__username="alice")
    assert sorted(tokens.values_list("token", flat=True)) == sorted(backup_codes("alice"))
    assert len(set(backup_codes("alice"))) == 10
    assert not StaticDevice.objects.exclude(user__username="alice").exists()


def test_seed_gives_carol_only_view_permissions_on_stepup():
    seed()
    carol = get_user_model().objects.get(username="carol")
    perms = set(carol.user_permissions.values_list("content_type__app_label", "codename"))
    assert perms, "carol needs the stepup view permissions"
    assert all(app == "stepup" and code.startswith("view_") for app, code in perms)
    assert {"view_policy", "view_decisionlog"} <= {code for _, code in perms}


def test_seed_is_idempotent():
    seed()
    first = snapshot()
    seed()
    assert snapshot() == first


def test_seed_restores_a_used_backup_code():
    seed()
    alice = get_user_model().objects.get(username="alice")
    StaticToken.objects.filter(device__user=alice).first().delete()
    seed()
    assert StaticToken.objects.filter(device__user=alice).count() == 10


def test_demo_totp_prints_a_code_the_device_accepts():
    seed()
    out = StringIO()
    call_command("demo_totp", "alice", stdout=out)
    token = out.getvalue().strip()
    assert len(token) == 6 and token.isdigit()
    assert TOTPDevice.objects.get(user__username="alice").verify_token(token)


def test_demo_totp_offset_prints_the_next_code_which_is_accepted_after_the_current_one():
    seed()
    device = TOTPDevice.objects.get(user__username="alice")
    now, ahead = StringIO(), StringIO()
    call_command("demo_totp", "alice", stdout=now)
    call_command("demo_totp", "alice", "--offset", "1", stdout=ahead)
    assert device.verify_token(now.getvalue().strip())
    device.refresh_from_db()
    assert device.verify_token(ahead.getvalue().strip())


def test_demo_totp_explains_a_user_without_a_device():
    seed()
    with pytest.raises(CommandError, match="dave has no confirmed TOTP device"):
        call_command("demo_totp", "dave", stdout=StringIO())


def test_demo_totp_explains_an_unknown_user():
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("demo_totp", "mallory", stdout=StringIO())
