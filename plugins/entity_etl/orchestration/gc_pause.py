"""``collection_paused()``: no automatic garbage collection while a DAG file loads and builds its DAGs.

Building 1,000 entity DAGs creates about 190,000 objects, and all of them live on: 8,200 operators with
their DAGs and task groups. CPython runs a full collection each time the surviving objects grow by a
quarter, and each one walks every object in the process, Airflow's own included. A 1,000-entity parse
triggered three of them, 0.5 to 0.6 s in all, and they found next to nothing to free (bench/README.md).

Automatic collection is therefore paused for the load and the build, and then restored as it was.
Anything the build left behind is collected by the next collection after that. Explicit
``gc.collect()`` calls still work in the meantime.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
