"""A cache backend that stands for Redis in the store's unit tests: shared, and breakable.

Its entries live at module level (as a server's would, for every process of the
test), it counts the calls it gets, and while :data:`STATE`.down is true every
call raises ``ConnectionError``, as redis-py does when the server is gone.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache


class _State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.data: dict[str, Any] = {}
        self.down = False
        self.calls = 0


STATE = _State()


class SharedCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def _call(self) -> None:
        STATE.calls += 1
        if STATE.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        self._call()
        return STATE.data.get(self.make_key(key, version), default)

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._call()
        STATE.data[self.make_key(key, version)] = value

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        self._call()
        made = self.make_key(key, version)
        if made in STATE.data:
            return False
        STATE.data[made] = value
        return True

    def delete(self, key: str, version: int | None = None) -> bool:
        self._call()
        return STATE.data.pop(self.make_key(key, version), None) is not None

    def clear(self) -> None:
        STATE.data.clear()
