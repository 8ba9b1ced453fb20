"""Concurrency on PostgreSQL: parallel verification attempts and parallel syncs.

The HTTP scenarios send 20 requests at once, half to each server of the pair
(16 request threads between them, each with its own database connection),
each from its own session of one user. The in-process scenarios run 20 (or 2)
threads in a worker process, with a pause injected inside the critical
section so that, without the row locks, the attempts would certainly overlap:
the control runs show that they then do collide, so the locked runs'
exact counts are the locks' doing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django_otp.oath import TOTP

from tests.paths import API_VERIFY
from tests.scale.harness import totp_code

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GUESSES = 20


def wrong_code(key: str, digits: int, step: int) -> str:
    valid = set()
    for drift in range(-3, 4):
        valid.add(f"{TOTP(bytes.fromhex(key), step=step, digits=digits, drift=drift).token():0{digits}d}")
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def parallel_attempts(pair, user: dict, token: str) -> list:
    servers = [pair[i % 2] for i in range(GUESSES)]

    def attempt(index: int):
        return servers[index].request(
            "POST",
            API_VERIFY,
            session=user["sessions"][index],
            json_body={"device": user["device"], "token": token},
        )

    with ThreadPoolExecutor(GUESSES) as pool:
        return list(pool.map(attempt, range(GUESSES)))


def test_twenty_parallel_wrong_guesses_are_each_counted(scale, pair):
    user = scale.worker("user", {"username": "guesser", "sessions": GUESSES, "totp": True})
    token = wrong_code(user["key"], user["digits"], user["step"])
    responses = parallel_attempts(pair, user, token)
    assert [r.status for r in responses] == [400] * GUESSES, [(r.status, r.body) for r in responses]
    assert {r.json()["code"] for r in responses} == {"invalid_token"}
    counts = scale.worker("counts", {"username": "guesser"})
    assert counts["failures"] == GUESSES
    assert counts["events"] == {"failed": GUESSES}


def test_twenty_parallel_replays_of_one_valid_code_succeed_once(scale, pair):
    user = scale.worker("user", {"username": "replayer", "sessions": GUESSES, "totp": True})
    token = totp_code(user["key"], user["digits"], user["step"])
    responses = parallel_attempts(pair, user, token)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [400] * (GUESSES - 1), [(r.status, r.body) for r in responses]
    counts = scale.worker("counts", {"username": "replayer"})
    assert counts["events"] == {"verified": 1, "failed": GUESSES - 1}
    assert counts["failures"] == GUESSES - 1  # every replay after the success is a failure
    assert counts["device_last_t"] >= 0


def test_parallel_guesses_stop_exactly_at_the_lockout(scale):
    result = scale.worker("verify-race", {"username": "race-lockout", "limit": 10, "pause": 0.02})
    # Attempts 1-9 fail, the 10th fails and starts the lockout, the other 10 meet it.
    assert result["statuses"] == {"400": 9, "429": 11}, result
    assert result["events"] == {"failed": 10, "locked": 11}
    assert result["locked"] is True
    assert result["failures"] == 0  # the lockout replaced the count


def test_the_device_throttle_lets_one_of_twenty_parallel_guesses_through(scale):
    result = scale.worker("verify-race", {"username": "race-throttle", "throttle_factor": 1, "pause": 0.02})
    assert result["statuses"] == {"400": 1, "429": 19}, result
    assert result["device_failures"] == 1
    assert result["failures"] == 1


def test_without_row_locks_parallel_replays_would_all_succeed(scale):
    """Control for the replay test: the same race with the locks taken out."""
    locked = scale.worker("verify-race", {"username": "race-locked", "valid": True, "pause": 0.02})
    assert locked["statuses"] == {"200": 1, "400": GUESSES - 1}, locked
    unlocked = scale.worker(
        "verify-race", {"username": "race-unlocked", "valid": True, "pause": 0.5, "locked": False}
    )
    assert unlocked["statuses"].get("200", 0) > 1, unlocked


def test_concurrent_syncs_are_serialised_and_the_second_finds_nothing_to_do(scale):
    pause = 0.5
    result = scale.worker("sync-race", {"locked": True, "pause": pause})
    assert all("error" not in r for r in result["results"]), result
    # Which thread wins the lock is chance; the one that lost it found nothing left to do.
    second, first = sorted(result["results"], key=lambda r: r["created"])
    assert (first["created"], first["empty"]) == (50, False)
    assert (second["created"], second["empty"]) == (0, True)
    assert second["finished"] - second["started"] >= 0.9 * pause  # it waited for the first to commit
    assert result["rows"] == 50
    assert result["created_history"] == 50
    assert result["version_bumps"] == 1


def test_without_the_lock_concurrent_syncs_collide(scale):
    """Control: both threads plan to create the same 50 policies; one of them fails."""
    result = scale.worker("sync-race", {"locked": False, "pause": 0.5})
    errors = [r["error"] for r in result["results"] if "error" in r]
    assert errors and "IntegrityError" in errors[0], result
    assert result["rows"] == 50  # the failed sync rolled back whole
