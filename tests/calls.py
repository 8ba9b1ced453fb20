"""What the test views record when they run: the side effect a test checks besides a status code.

One list for every folder's views, emptied before and after each test (tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

CALLS: list[Any] = []
