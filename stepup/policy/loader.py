"""Reading policy files (CONTRACT §3): the small public API of the policy package.

:func:`load_files` and :func:`load_text` read and validate whole files;
:func:`validate_policy` and :func:`validate_test` (from
:mod:`stepup.policy.validation`) check one stored policy or test;
:func:`dump_policies` (from :mod:`stepup.policy.dump`) writes the export format.
The work is done in :mod:`stepup.policy.locate` (values and their lines),
:mod:`stepup.policy.checks` and :mod:`stepup.policy.validation`.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stepup.policy.collector import collector_paused
from stepup.policy.dump import dump_policies
from stepup.policy.locate import Format
from stepup.policy.model import PolicyFile
from stepup.policy.validation import Parsed, merge, parse, validate_policy, validate_test

__all__ = ["dump_policies", "load_files", "load_text", "validate_policy", "validate_test"]


def _format_of(source: str) -> Format:
    return "json" if source.lower().endswith(".json") else "yaml"


def _read(path: str | Path) -> Parsed:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return Parsed.unreadable(
            source, f"cannot read the policy file: {exc.strerror or exc}; check the path"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Parsed.unreadable(
            source,
            f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
            raw.count(b"\n", 0, exc.start) + 1,
        )
    return parse(text, source, _format_of(source))


def load_files(paths: Sequence[str | Path]) -> PolicyFile:
    """Read and validate policy files, merged into one :class:`PolicyFile`.

    A policy id defined in two files, or a missing, unreadable, non-UTF-8 or
    empty file, is an error. :attr:`PolicyFile.sources` holds the paths as given.
    """
    with collector_paused():
        return merge([_read(path) for path in paths], [str(path) for path in paths])


def load_text(text: str, source: str, fmt: Format | None = None) -> PolicyFile:
    """Read and validate one policy document.

    :param source: the name used in errors (usually the file's path).
    :param fmt: ``"yaml"`` or ``"json"``; by default ``.json`` sources are JSON, others YAML.
    """
    with collector_paused():
        return merge([parse(text, source, fmt or _format_of(source))], [source])
