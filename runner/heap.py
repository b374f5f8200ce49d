"""Hand freed heap memory back to the operating system (glibc's ``malloc_trim``).

On CPU, PyTorch's tensors live in glibc's heap. A loss part's forward pass allocates its
activations and its backward frees them, in different sizes and orders from what the next part
allocates, so the heap keeps freed pages resident in holes it cannot shrink past: for an NPO
step of SmolLM2-135M with every parameter trainable that was about 200 MiB of the peak. The
trainer trims once a later part's forward pass has reused what it could of those holes, so what
goes back is what would have sat idle (trimming right after each backward instead handed back
pages the next pass then faulted in again: 16-31% slower steps).
Elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> bool:
    """Return the heap's free pages to the system; True where any were released."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False
