"""The garbage collector's policy for the service process.

CPython's cyclic collector runs a young-generation pass every 700 net allocations of container
objects, and a full pass whenever enough objects have survived into the old generation. A
service holding ~10,000 requests in flight allocates a handful of containers per record, so
with the default policy W1 spent about 0.9 s of its 4 s in the collector (26 full passes of up
to 30 ms each, every one a pause of every partition). Nearly everything the pipeline allocates is
freed by reference counting; the collector is only needed for the rare cycle. A cycle that
holds a large buffer is the exception that matters: it lives until a pass finds it, so the one
aiokafka makes for every fetch dropped unread is broken where it is made (see
:mod:`stream_service.fetch_records`).

So the service (a) collects young objects every ``young_threshold`` allocations instead of 700,
and (b) freezes everything alive once start-up is done (modules, classes, clients: hundreds of
thousands of objects that live for the whole run), so full passes no longer walk them.
"""

from __future__ import annotations

import gc

DEFAULT_YOUNG_THRESHOLD = 50_000  # container allocations between young-generation passes
# CPython's defaults for the older generations: a middle pass every 10 young ones, a full pass
# every 10 middle ones (and only when the survivors have grown by a quarter since the last).
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 10


def apply_policy(young_threshold: int) -> None:
    """Set the collector's thresholds (0 disables automatic collection, as in CPython)."""
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def freeze_startup() -> None:
    """Move every object alive now out of the collector's reach (O(1): no pass is run).

    Call it once start-up is done; objects frozen stay alive for the life of the process (only
    cycles among them would have been freed), which start-up objects do anyway.
    """
    gc.freeze()
