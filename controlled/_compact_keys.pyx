# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled half of controlled.visited.CompactKeys: the Python encode's bytes, from one typed loop.

setup.py builds it the optional way it builds the hot modules (kernel_model/compiled.py), and controlled.visited
falls back to its Python encode when it is missing or stale; tests/test_compact_keys_compiled.py checks that both
write the same bytes and grow the same tables. The Python encode flattens the key into a list, numbers each part
in a second list and writes the prefix code from a third (through a bytearray when a number needs escaping, as a
two-page cell's folios always do): most of its cost is those lists and per-number Python calls. Here each part
is looked up in its field's table and written into a C buffer as it comes.

And a part is often the very object the same field held in the key before: a thread's position (the machine
builds each position once and keeps it), the renamed folios and disk (controlled.canonical's memo hands out the
same tuple for the same pages). Hashing such a part again, a tuple of a dozen tuples, is most of a lookup's cost;
so each field remembers the object it held last and that object's number, and an identical object (``is``) takes
that number without a lookup. Exact: the encoder holds a reference to that object, so nothing else can take its
identity, and parts are immutable (they are hashable keys).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_SetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject

cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    Py_ssize_t PyDict_Size(object d) except -1

# The prefix code (controlled.visited's module docstring): one byte below 255, 255 and 16 bits below 65,535,
# 255, 65,535 and 32 bits beyond.
cdef enum:
    ESCAPE = 0xFF
    ESCAPE2 = 0xFFFF
    STACK_BYTES = 1024  # a key of up to 146 numbers (7 bytes each at most, its shape included) needs no malloc
cdef Py_ssize_t MOST = 0xFFFFFFFF


cdef inline Py_ssize_t _put(unsigned char *out, Py_ssize_t at, Py_ssize_t n) except -1:
    """Write ``n`` at ``out[at]`` in the prefix code; where the next number goes."""
    if n < ESCAPE:
        out[at] = <unsigned char> n
        return at + 1
    if n < ESCAPE2:
        out[at] = ESCAPE
        out[at + 1] = <unsigned char> (n & 0xFF)
        out[at + 2] = <unsigned char> (n >> 8)
        return at + 3
    if n > MOST:
        raise OverflowError(f"a field of the state took more than {MOST:,} values")
    out[at] = ESCAPE
    out[at + 1] = 0xFF
    out[at + 2] = 0xFF
    out[at + 3] = <unsigned char> (n & 0xFF)
    out[at + 4] = <unsigned char> ((n >> 8) & 0xFF)
    out[at + 5] = <unsigned char> ((n >> 16) & 0xFF)
    out[at + 6] = <unsigned char> ((n >> 24) & 0xFF)
    return at + 7


cdef class Encoder:
    """CompactKeys.encode over ``tables`` (one dict per flattened place, shared with the CompactKeys, which counts
    them); ``new_table()`` makes those a longer key than any before needs."""

    cdef list tables
    cdef object new_table
    cdef list last  # per field: the object it held in the last key encoded (None before any)
    cdef Py_ssize_t *last_number  # per field: that object's number
    cdef Py_ssize_t fields  # how many fields last and last_number cover

    def __cinit__(self, list tables, object new_table):
        self.tables = tables
        self.new_table = new_table
        self.last = []
        self.last_number = NULL
        self.fields = 0

    def __dealloc__(self):
        PyMem_Free(self.last_number)

    cdef int _grow(self, Py_ssize_t fields) except -1:
        cdef Py_ssize_t *grown = <Py_ssize_t *> PyMem_Realloc(self.last_number, fields * sizeof(Py_ssize_t))
        if grown is NULL:
            raise MemoryError()
        self.last_number = grown
        while len(self.tables) < fields:
            self.tables.append(self.new_table())
        while self.fields < fields:
            self.last.append(_NOTHING)
            self.last_number[self.fields] = 0
            self.fields += 1
        return 0

    def encode(self, tuple key):
        """The bytes of ``key`` (a tuple of tuples): the count of parts in each of its tuples, then each part's
        number in its field, in the prefix code."""
        cdef unsigned char stack[STACK_BYTES]
        cdef unsigned char *buf = stack
        cdef Py_ssize_t at = 0, field = 0, i, n, nparts = 0
        cdef tuple part
        cdef object item, table
        cdef PyObject *found
        cdef list last = self.last
        for part in key:
            nparts += len(part)
        if nparts > self.fields:
            self._grow(nparts)
        if 7 * (nparts + len(key)) > STACK_BYTES:
            buf = <unsigned char *> PyMem_Malloc(7 * (nparts + len(key)))
            if buf is NULL:
                raise MemoryError()
        try:
            for part in key:
                at = _put(buf, at, len(part))
            for part in key:
                for i in range(len(part)):
                    item = part[i]
                    if item is last[field]:
                        n = self.last_number[field]
                    else:
                        table = self.tables[field]
                        found = PyDict_GetItemWithError(table, item)
                        if found is NULL:
                            n = PyDict_Size(table)
                            PyDict_SetItem(table, item, n)
                        else:
                            n = <object> found
                        last[field] = item
                        self.last_number[field] = n
                    at = _put(buf, at, n)
                    field += 1
            return PyBytes_FromStringAndSize(<char *> buf, at)
        finally:
            if buf is not stack:
                PyMem_Free(buf)


_NOTHING = object()  # what a field held before any key: identical to no part
