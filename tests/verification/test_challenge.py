"""The pending challenge as stored in ``PendingChallenge.data``: one shape, read back defensively."""

from __future__ import annotations

from stepup.challenge import Challenge


def test_a_challenge_reads_back_as_it_was_saved() -> None:
    challenge = Challenge(
        action="payments.transfer",
        url_name="transfer",
        method="POST",
        path="/pay/?to=bob",
        attrs={"amount": "5000"},
        digest="d" * 64,
        policies=("payments-large",),
        descriptions=("Transfers over 1000 need a fresh second factor.",),
        max_age=0,
        factors=("totp",),
        one_shot=True,
        post={"amount": ["5000"]},
        post_secrets=("pin",),
        next="/pay/?to=bob",
    )
    assert Challenge.from_dict(challenge.to_dict()) == challenge


def test_a_row_in_the_earlier_shape_reads_back() -> None:
    # Saved before post_secrets existed, with the "expires" pending.get_challenge adds.
    row = {"action": "billing.update", "factors": ["totp"], "one_shot": False, "next": "/b/", "expires": 1.0}
    challenge = Challenge.from_dict(row)
    assert challenge.action == "billing.update"
    assert challenge.factors == ("totp",)
    assert challenge.post_secrets == ()
    assert challenge.next == "/b/"


def test_malformed_fields_read_as_nothing_in_particular() -> None:
    row = {
        "action": 5,
        "attrs": ["amount"],
        "factors": "totp",
        "policies": ["ok", 3],
        "descriptions": ["  ", "Shown."],
        "one_shot": "yes",
        "max_age": True,
        "post": {"a": "not a list", "b": ["1", 2]},
    }
    challenge = Challenge.from_dict(row)
    assert challenge.action is None
    assert challenge.attrs == {}
    assert challenge.factors == ()
    assert challenge.policies == ("ok",)
    assert challenge.descriptions == ("Shown.",)
    assert challenge.one_shot is False
    assert challenge.max_age == 0
    assert challenge.post == {"b": ["1", "2"]}
