"""The garbage collector paused while a policy file is loaded or synced.

Reading a big file makes hundreds of thousands of objects (nodes, dicts,
tuples, specs) and no garbage; each young-generation collection would walk
them all again, which costs more than the reading itself at 10,000 policies.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collections inside the block.

    The collector is enabled again on the way out, even on an error, and only
    if it was enabled before: a caller that turned it off keeps it off. Blocks
    nest. Reference counting still frees what goes out of use at once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
