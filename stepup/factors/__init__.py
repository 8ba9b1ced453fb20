"""Factor kinds: one interface (:class:`Factor`), one registry (``STEPUP["FACTORS"]``).

See ``docs/factors.md`` for each kind and for adding one.
"""

from stepup.factors.base import Begun, Choice, Factor

__all__ = ["Begun", "Choice", "Factor"]
