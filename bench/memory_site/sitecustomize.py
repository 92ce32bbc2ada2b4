"""Loaded by bench/memory.py into the training process only (PYTHONPATH and RLAIF_MEMORY_LOG):
every 2 s, one line of what glibc's allocator holds (`mallinfo2`, summed over its arenas) beside
the process's resident memory and the steps done, so that live memory and freed-but-kept memory
can be told apart step by step. The variables are removed at once, so the processes the run
starts do not log too."""

import ctypes
import os
import threading
import time

LOG = os.environ.pop("RLAIF_MEMORY_LOG", None)
ROWS = os.environ.pop("RLAIF_MEMORY_ROWS", "")  # the run's metrics.csv: steps done so far
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
FIELDS += ("fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def steps_done() -> int:
    try:
        with open(ROWS) as f:
            return max(0, sum(1 for _ in f) - 1)  # less the header
    except OSError:
        return 0


def sample(path: str) -> None:
    libc = ctypes.CDLL(None)
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is not None:
        mallinfo2.restype = MallInfo2
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "w") as out:
        out.write("steps_done rss_bytes heap_bytes mmapped_bytes live_bytes free_bytes\n")
        while True:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page
            info = mallinfo2() if mallinfo2 is not None else MallInfo2()
            out.write(
                f"{steps_done()} {rss} {info.arena} {info.hblkhd} {info.uordblks} {info.fordblks}\n"
            )
            out.flush()
            time.sleep(2)


if LOG:
    threading.Thread(target=sample, args=(LOG,), daemon=True, name="memory-log").start()
