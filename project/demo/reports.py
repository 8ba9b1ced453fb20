"""The synthetic invoice report, streamed as CSV so that large exports use little memory."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, timedelta

MAX_ROWS = 200_000
DEFAULT_ROWS = 100
HEADER = ("invoice", "customer", "issued", "amount_eur", "status")
CUSTOMERS = ("Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises")
STATUSES = ("paid", "paid", "paid", "open", "overdue")
START = date(2024, 1, 1)


def parse_rows(value: str | None) -> int | None:
    """The rows asked for, capped at :data:`MAX_ROWS`; ``None`` unless a positive integer."""
    try:
        rows = int(value if value is not None else DEFAULT_ROWS)
    except ValueError:
        return None
    return min(rows, MAX_ROWS) if rows > 0 else None


def synthetic_row(i: int) -> tuple[str, ...]:
    """Row ``i`` of the report: plausible, deterministic, and about no real customer."""
    cents = (i * 7919 + 1234) % 1_000_000
    return (
        f"INV-{i + 1:06d}",
        CUSTOMERS[i % len(CUSTOMERS)],
        (START + timedelta(days=i % 365)).isoformat(),
        f"{cents // 100}.{cents % 100:02d}",
        STATUSES[(i * 3) % len(STATUSES)],
    )


class _Echo:
    """A file-like object whose ``write`` returns the line, for a streaming csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: int) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    for i in range(rows):
        yield writer.writerow(synthetic_row(i))
