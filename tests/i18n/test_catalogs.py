"""The shipped catalogs are complete and current: ``make messages`` would change nothing.

- extracting the strings again (``scripts/messages.sh`` on a copy of ``stepup/``)
  gives the committed ``.po`` files, so a new or changed string that was not
  extracted fails here;
- every entry of every catalog has a translation that is neither empty nor fuzzy;
- every compiled ``.mo`` holds exactly what its ``.po`` says.

Extraction and compilation need GNU gettext (``apt-get install gettext``): the
tests are skipped without it, and fail in CI.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "stepup" / "locale"
LANGUAGES = ("de", "fr")


def _needs_gettext() -> None:
    missing = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if shutil.which(tool) is None]
    if missing:
        skip_or_fail(
            f"GNU gettext is not installed ({', '.join(missing)} missing)", what="the catalog checks"
        )


def entries(po: Path) -> list[dict[str, str | list[str]]]:
    """The entries of a ``.po`` file: comments (flags, locations) and every msgid/msgstr field."""
    found: list[dict[str, str | list[str]]] = []
    for block in po.read_text(encoding="utf-8").strip().split("\n\n"):
        entry: dict[str, str | list[str]] = {"comments": []}
        key = ""
        for line in block.splitlines():
            if line.startswith("#"):
                comments = entry["comments"]
                assert isinstance(comments, list)
                comments.append(line)
            elif line.startswith('"'):
                entry[key] = str(entry[key]) + line[1:-1]
            else:
                key, _, value = line.partition(" ")
                entry[key] = value[1:-1]
        found.append(entry)
    return found


def without_creation_date(po: Path) -> list[dict[str, str | list[str]]]:
    """``entries``, less the header's POT-Creation-Date (the one thing every run changes)."""
    parsed = entries(po)
    parsed[0]["msgstr"] = re.sub(r"POT-Creation-Date: [^\\]*\\n", "", str(parsed[0]["msgstr"]))
    return parsed


def test_make_messages_would_change_nothing(tmp_path: Path) -> None:
    _needs_gettext()
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "stepup", copy / "stepup", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "messages.sh", copy / "scripts" / "messages.sh")
    result = subprocess.run(
        ["bash", str(copy / "scripts" / "messages.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for lang in LANGUAGES:
        name = f"{lang}/LC_MESSAGES/django.po"
        assert without_creation_date(copy / "stepup" / "locale" / name) == without_creation_date(
            LOCALE / name
        ), (
            f"stepup/locale/{name} is out of date: run `make messages`, translate the new entries, "
            "and run it again"
        )


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_entry_is_translated(lang: str) -> None:
    po = LOCALE / lang / "LC_MESSAGES" / "django.po"
    parsed = entries(po)
    assert len(parsed) > 50  # the catalog is there, not an empty shell
    header, messages = parsed[0], parsed[1:]
    assert f"Language: {lang}\\n" in str(header["msgstr"])
    assert "Plural-Forms:" in str(header["msgstr"])
    for entry in messages:
        flags = " ".join(c for c in entry["comments"] if c.startswith("#,"))
        assert "fuzzy" not in flags, f"{po}: fuzzy translation of {entry['msgid']!r}"
        translations = [v for k, v in entry.items() if k.startswith("msgstr")]
        assert translations, f"{po}: no msgstr for {entry['msgid']!r}"
        assert all(str(t).strip() for t in translations), f"{po}: {entry['msgid']!r} is not translated"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalog_matches_its_source(lang: str, tmp_path: Path) -> None:
    _needs_gettext()
    folder = LOCALE / lang / "LC_MESSAGES"
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(folder / "django.po")], check=True)
    with (folder / "django.mo").open("rb") as shipped, fresh.open("rb") as compiled:
        assert gettext.GNUTranslations(shipped)._catalog == gettext.GNUTranslations(compiled)._catalog, (  # type: ignore[attr-defined]
            f"stepup/locale/{lang}/LC_MESSAGES/django.mo is stale: run `make messages`"
        )
