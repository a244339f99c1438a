# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled controlled.reducer._packed: a persistent-set memo key's numbers as bytes, in typed code.

The reducer packs one key per state it asks about; the Python version (max, then an array of the chosen width)
costs about 5,000 instructions a key, this one a few hundred. setup.py builds it the optional way it builds the
hot modules (kernel_model/compiled.py); controlled.reducer falls back to its Python _packed when it is missing or
stale, and tests/test_reducer_key.py checks that both give the same bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint16_t, uint32_t
from libc.string cimport memcpy


def packed(list numbers):
    """_packed(numbers): each number (below 2**32) in one width, the narrowest that holds the largest (1, 2 or 4
    bytes, native order, as array's), then that width in it; appends the width to ``numbers`` as _packed does."""
    cdef Py_ssize_t i, n = len(numbers)
    cdef unsigned long long top = 0, x
    cdef int width
    cdef uint16_t h
    cdef uint32_t w
    if n == 0:
        raise ValueError("packed() of no numbers")
    for i in range(n):
        x = numbers[i]
        if x > top:
            top = x
    if top < 0x100:
        width = 1
    elif top < 0x10000:
        width = 2
    elif top <= 0xFFFFFFFF:
        width = 4
    else:
        raise OverflowError(f"a memo key's number {top} does not fit 32 bits")
    numbers.append(width)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, (n + 1) * width)
    cdef char *buf = PyBytes_AS_STRING(out)
    for i in range(n + 1):
        x = numbers[i]
        if width == 1:
            buf[i] = <char> x
        elif width == 2:
            h = <uint16_t> x
            memcpy(buf + 2 * i, &h, 2)
        else:
            w = <uint32_t> x
            memcpy(buf + 4 * i, &w, 4)
    return out
