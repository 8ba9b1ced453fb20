"""A policy's ``description``: one text, or texts by language with ``en`` as the fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from stepup.policy.loader import dump_policies, load_text, validate_policy
from stepup.policy.model import localized
from tests.policy.test_loader import VALIDATOR, marked_line, only_error, policy

BY_LANGUAGE = {"en": "Moving money needs a fresh code.", "de": "Geld bewegen braucht einen frischen Code."}


def test_a_description_may_be_given_per_language() -> None:
    result = load_text(policy(description=json.dumps(BY_LANGUAGE, ensure_ascii=False)), "p.yaml")

    assert result.ok, result.errors
    assert result.policies[0].description == BY_LANGUAGE


def test_per_language_descriptions_survive_dump_and_reload() -> None:
    (spec,) = load_text(policy(description=json.dumps(BY_LANGUAGE, ensure_ascii=False)), "p.yaml").policies

    assert load_text(dump_policies([spec]), "again.yaml").policies == (spec,)
    assert validate_policy(spec.to_dict())[0] == spec


@pytest.mark.parametrize(
    ("value", "field", "says"),
    [
        ("{de: Hallo}  # <-", "policies[0].description", "the 'en' text is missing"),
        ("{en: Hi, DE: Hallo}  # <-", "policies[0].description", "'DE' is not a language code"),
        ("{en: Hi, de_at: Servus}  # <-", "policies[0].description", "'de_at' is not a language code"),
        ('{en: Hi, de: " "}  # <-', "policies[0].description.de", "expected a non-empty text"),
        ("{en: 5}  # <-", "policies[0].description.en", "expected a string"),
        ("{en: [a]}  # <-", "policies[0].description.en", "expected a string"),
        ("[a, b]  # <-", "policies[0].description", "a mapping of language code to text"),
        ('{en: "a\\u0007b"}  # <-', "policies[0].description.en", "control character"),
    ],
)
def test_bad_per_language_descriptions_name_line_and_field(value: str, field: str, says: str) -> None:
    text = policy(description=value)
    error = only_error(text)

    assert (error.line, error.field) == (marked_line(text), field)
    assert says in error.message
    # The JSON Schema rejects it as well.
    assert list(VALIDATOR.iter_errors(yaml.safe_load(text)))


def test_the_schema_accepts_what_the_loader_accepts() -> None:
    for description in ("plain", {"en": "a"}, {"en": "a", "pt-br": "b", "zh-hans": "c"}):
        document = yaml.safe_load(policy(description=json.dumps(description)))
        assert load_text(json.dumps(document), "p.json").ok
        assert not list(VALIDATOR.iter_errors(document))


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("de", "Geld bewegen braucht einen frischen Code."),
        ("de-at", "Geld bewegen braucht einen frischen Code."),
        ("de_CH", "Geld bewegen braucht einen frischen Code."),
        ("fr", "Moving money needs a fresh code."),
        ("en-us", "Moving money needs a fresh code."),
        (None, "Moving money needs a fresh code."),
        ("", "Moving money needs a fresh code."),
    ],
)
def test_localized_picks_the_language_then_its_base_then_english(language: Any, expected: str) -> None:
    assert localized(BY_LANGUAGE, language) == expected


def test_a_plain_description_is_the_same_in_every_language() -> None:
    assert localized("Same.", "de") == "Same."
