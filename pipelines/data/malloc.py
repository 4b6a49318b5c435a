"""Keep freed memory in an augmentation worker's heap, so calls do not page-fault their views in anew.

A call allocates its views afresh and drops them once Ray Data has stored the block; glibc maps
large allocations freshly and unmaps them on free, so calls paid page faults at random (figures in
``bench/README.md``, "Measurements behind the data path's constants"). ``keep_freed_memory``
raises the mmap and trim thresholds to ``HEAP_KEEP_BYTES`` for the process, so views come from
the heap and freed memory stays mapped for the next call. glibc only (elsewhere it does nothing).
"""

import ctypes
import ctypes.util
import logging
import sys

LOG = logging.getLogger(__name__)
HEAP_KEEP_BYTES = 2**28  # 256 MiB: a 256-image 224 px call's views (74 MB) twice over, with room
GLIBC_OLD_MMAP_MAX = 2**25  # the most a glibc capping it at HEAP_MAX_SIZE / 2 accepts (32 MiB)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h
_in_force: bool | None = None


def keep_freed_memory() -> bool:
    """Set this process' glibc malloc thresholds (once; later calls return the first result).

    Returns:
        Whether both thresholds are set (False off Linux or without glibc's ``mallopt``).
    """
    global _in_force
    if _in_force is None:
        _in_force = _set_thresholds(HEAP_KEEP_BYTES)
        LOG.debug("malloc thresholds %s", "raised" if _in_force else "unchanged")
    return _in_force


def _set_thresholds(nbytes: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library found, or one without mallopt
        return False
    fallback = min(nbytes, GLIBC_OLD_MMAP_MAX)
    mmap_set = mallopt(_M_MMAP_THRESHOLD, nbytes) or mallopt(_M_MMAP_THRESHOLD, fallback)
    return bool(mmap_set) and bool(mallopt(_M_TRIM_THRESHOLD, nbytes))
