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
so each field remembers the objects it held last and their numbers, and an identical object (``is``) takes
that number without a lookup. Exact: the encoder holds a reference to that object, so nothing else can take its
identity, and parts are immutable (they are hashable keys). Each field remembers SLOTS objects this way (a
direct-mapped cache by address): a field's part flips between a few objects (the two values of a disk block, the
positions a thread goes back and forth between), which one slot would miss each time.

``encode_permuted`` writes what ``encode`` writes for a key permuted by writer symmetry (controlled.symmetry)
without building the permuted key: a Plan says for each field of the permuted key where its part comes from in
the key as given (a thread's position moves to the thread it is swapped with), and how to permute a part
(``fn(part, p)``, for the fields that name threads or CPUs). The number of a part's permuted image is remembered
per part (by identity, then by value): permuting a part and hashing its image happen once per distinct part, not
once per state.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_SetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

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


cdef enum:
    SLOTS = 16  # identity slots per field (a power of two)


cdef struct Slot:
    PyObject *obj  # a part the cache holds a reference to (NULL: empty)
    Py_ssize_t number  # what the part is numbered


cdef inline Slot *_slot(Slot *cache, Py_ssize_t field, object item):
    """The slot of ``item`` (by address) among ``field``'s SLOTS."""
    cdef size_t at = <size_t> <PyObject *> item
    return &cache[field * SLOTS + <Py_ssize_t> (((at >> 4) ^ (at >> 10)) & (SLOTS - 1))]


cdef inline void _hold(Slot *slot, object item, Py_ssize_t n):
    """Remember ``item``'s number in ``slot``, holding a reference to it (its address stays its own)."""
    Py_INCREF(item)
    Py_XDECREF(slot.obj)
    slot.obj = <PyObject *> item
    slot.number = n


cdef Slot *_grow_slots(Slot *cache, Py_ssize_t old, Py_ssize_t fields) except NULL:
    cdef Slot *grown = <Slot *> PyMem_Realloc(cache, fields * SLOTS * sizeof(Slot))
    cdef Py_ssize_t i
    if grown is NULL:
        raise MemoryError()
    for i in range(old * SLOTS, fields * SLOTS):
        grown[i].obj = NULL
        grown[i].number = 0
    return grown


cdef void _free_slots(Slot *cache, Py_ssize_t fields):
    cdef Py_ssize_t i
    if cache is NULL:
        return
    for i in range(fields * SLOTS):
        Py_XDECREF(cache[i].obj)
    PyMem_Free(cache)


cdef class Plan:
    """How one permutation makes the permuted key's fields from a key's (Encoder.encode_permuted): per field of
    the permuted key, the part of the key its item comes from (0: state, 1: positions, 2: oracle), its place
    there, and the function that permutes it (``fn(item, p)``) or None (kept as it is)."""

    cdef readonly Py_ssize_t fields
    cdef Py_ssize_t *src_part
    cdef Py_ssize_t *src_index
    cdef list fns
    cdef object p
    cdef list memo  # per field with a function: part -> its image's number
    cdef Slot *cache  # per field with a function: part -> its image's number, by identity

    def __cinit__(self, list fields, object p):
        cdef Py_ssize_t f
        self.fields = len(fields)
        self.cache = NULL
        self.src_part = <Py_ssize_t *> PyMem_Malloc(max(1, self.fields) * sizeof(Py_ssize_t))
        self.src_index = <Py_ssize_t *> PyMem_Malloc(max(1, self.fields) * sizeof(Py_ssize_t))
        if self.src_part is NULL or self.src_index is NULL:
            raise MemoryError()
        self.cache = _grow_slots(NULL, 0, max(1, self.fields))
        self.fns, self.memo, self.p = [], [], p
        for f in range(self.fields):
            part, index, fn = fields[f]
            if not 0 <= part <= 2:
                raise ValueError(f"plan field {f}: part {part} is not 0, 1 or 2")
            self.src_part[f] = part
            self.src_index[f] = index
            self.fns.append(fn)
            self.memo.append({} if fn is not None else None)

    def __dealloc__(self):
        PyMem_Free(self.src_part)
        PyMem_Free(self.src_index)
        _free_slots(self.cache, max(1, self.fields))


cdef class Encoder:
    """CompactKeys.encode over ``tables`` (one dict per flattened place, shared with the CompactKeys, which counts
    them); ``new_table()`` makes those a longer key than any before needs."""

    cdef list tables
    cdef object new_table
    cdef Slot *cache  # per field, SLOTS parts it held and their numbers
    cdef Py_ssize_t fields  # how many fields the cache covers

    def __cinit__(self, list tables, object new_table):
        self.tables = tables
        self.new_table = new_table
        self.cache = NULL
        self.fields = 0

    def __dealloc__(self):
        _free_slots(self.cache, self.fields)

    cdef int _grow(self, Py_ssize_t fields) except -1:
        self.cache = _grow_slots(self.cache, self.fields, fields)
        self.fields = fields
        while len(self.tables) < fields:
            self.tables.append(self.new_table())
        return 0

    cdef inline Py_ssize_t _number(self, Py_ssize_t field, object item) except -1:
        """``item``'s number in ``field``'s table (numbered now if new)."""
        return _remembered(_slot(self.cache, field, item), self.tables[field], item, None, field, None)

    def encode(self, tuple key):
        """The bytes of ``key`` (a tuple of tuples): the count of parts in each of its tuples, then each part's
        number in its field, in the prefix code."""
        cdef unsigned char stack[STACK_BYTES]
        cdef unsigned char *buf = stack
        cdef Py_ssize_t at = 0, field = 0, i, nparts = 0
        cdef tuple part
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
                    at = _put(buf, at, self._number(field, part[i]))
                    field += 1
            return PyBytes_FromStringAndSize(<char *> buf, at)
        finally:
            if buf is not stack:
                PyMem_Free(buf)

    def encode_permuted(self, tuple key, Plan plan):
        """``encode(k)`` of the key ``k`` that ``plan`` makes of ``key`` (three tuples, as many parts in all as
        the plan has fields), without building it."""
        cdef unsigned char stack[STACK_BYTES]
        cdef unsigned char *buf = stack
        cdef Py_ssize_t at = 0, field, nparts = 0
        cdef tuple part
        if len(key) != 3:
            raise ValueError(f"a permuted key has 3 parts, not {len(key)}")
        for part in key:
            nparts += len(part)
        if nparts != plan.fields:
            raise ValueError(f"the key has {nparts} fields, its plan {plan.fields}")
        if nparts > self.fields:
            self._grow(nparts)
        if 7 * (nparts + 3) > STACK_BYTES:
            buf = <unsigned char *> PyMem_Malloc(7 * (nparts + 3))
            if buf is NULL:
                raise MemoryError()
        try:
            for part in key:
                at = _put(buf, at, len(part))
            for field in range(nparts):
                item = (<tuple> key[plan.src_part[field]])[plan.src_index[field]]
                if plan.fns[field] is None:
                    at = _put(buf, at, self._number(field, item))
                else:
                    at = _put(buf, at, _image(plan, field, item, self))
            return PyBytes_FromStringAndSize(<char *> buf, at)
        finally:
            if buf is not stack:
                PyMem_Free(buf)


cdef inline Py_ssize_t _image(Plan plan, Py_ssize_t field, object item, Encoder numbering) except? -1:
    """The number in ``numbering``'s table of ``field`` (None: the hash) of ``item`` permuted by ``plan``'s
    function for that field."""
    return _remembered(_slot(plan.cache, field, item), plan.memo[field], item, plan, field, numbering)


cdef Py_ssize_t _remembered(Slot *slot, object memo, object item, Plan plan, Py_ssize_t field,
                            Encoder numbering) except? -1:
    """``item``'s value in ``memo``, remembered in ``slot`` by identity. ``memo`` is a field's table (``plan``
    None: a new item takes the next number) or a plan's images of that field (a new item's is its image's number
    in ``numbering``'s table, or with None its hash)."""
    cdef PyObject *found
    cdef Py_ssize_t n
    if slot.obj == <PyObject *> item:
        return slot.number
    found = PyDict_GetItemWithError(memo, item)
    if found is NULL:
        if plan is None:
            n = PyDict_Size(memo)
        else:
            image = plan.fns[field](item, plan.p)
            n = hash(image) if numbering is None else numbering._number(field, image)
        PyDict_SetItem(memo, item, n)
    else:
        n = <object> found
    _hold(slot, item, n)
    return n


# CPython's tuple hash (Objects/tupleobject.c, tuplehash: xxHash's round over the items' hashes, since 3.8), so
# that Hasher's hashes are hash(key)'s, bit for bit.
cdef extern from "Python.h":
    ctypedef size_t Py_uhash_t

cdef Py_uhash_t XXPRIME_1 = 11400714785074694791ULL
cdef Py_uhash_t XXPRIME_2 = 14029467366897019727ULL
cdef Py_uhash_t XXPRIME_5 = 2870177450012600261ULL


cdef inline Py_uhash_t _lane(Py_uhash_t acc, Py_uhash_t lane):
    acc += lane * XXPRIME_2
    acc = (acc << 31) | (acc >> 33)
    return acc * XXPRIME_1


cdef inline Py_hash_t _finish(Py_uhash_t acc, Py_ssize_t length):
    acc += <Py_uhash_t> length ^ (XXPRIME_5 ^ 3527539UL)
    if acc == <Py_uhash_t> -1:
        return 1546275796
    return <Py_hash_t> acc


cdef class Hasher:
    """hash(key) of a canonical key (a tuple of tuples), from its parts' hashes remembered by identity (SLOTS per
    field, as Encoder's numbers): hash compaction's fingerprint (controlled.visited.HashKeys) without hashing
    again the parts that a state shares with the states before it. ``hash_permuted`` is hash(k) of the key ``k``
    a Plan makes of ``key``, without building it. The same value as hash() in every process (the parallel search's
    workers share one visited table), since it is CPython's tuple hash of the same items' hashes."""

    cdef Slot *cache  # per field, SLOTS parts it held and their hashes
    cdef Py_ssize_t fields

    def __cinit__(self):
        self.cache = NULL
        self.fields = 0

    def __dealloc__(self):
        _free_slots(self.cache, self.fields)

    cdef inline Py_hash_t _hash(self, Py_ssize_t field, object item) except? -1:
        cdef Slot *slot = _slot(self.cache, field, item)
        cdef Py_hash_t h
        if slot.obj == <PyObject *> item:
            return slot.number
        h = hash(item)
        _hold(slot, item, h)
        return h

    cdef int _fit(self, tuple key) except -1:
        cdef Py_ssize_t nparts = 0
        cdef tuple part
        for part in key:
            nparts += len(part)
        if nparts > self.fields:
            self.cache = _grow_slots(self.cache, self.fields, nparts)
            self.fields = nparts
        return nparts

    def hash(self, tuple key):
        """hash(key)."""
        cdef Py_uhash_t acc = XXPRIME_5, inner
        cdef Py_ssize_t field = 0, i
        cdef tuple part
        self._fit(key)
        for part in key:
            inner = XXPRIME_5
            for i in range(len(part)):
                inner = _lane(inner, <Py_uhash_t> self._hash(field, part[i]))
                field += 1
            acc = _lane(acc, <Py_uhash_t> _finish(inner, len(part)))
        return _finish(acc, len(key))

    def hash_permuted(self, tuple key, Plan plan):
        """hash(k) of the key ``k`` that ``plan`` makes of ``key`` (see Encoder.encode_permuted)."""
        cdef Py_uhash_t acc = XXPRIME_5, inner
        cdef Py_ssize_t field = 0, i, nparts
        cdef tuple part
        if len(key) != 3:
            raise ValueError(f"a permuted key has 3 parts, not {len(key)}")
        nparts = self._fit(key)
        if nparts != plan.fields:
            raise ValueError(f"the key has {nparts} fields, its plan {plan.fields}")
        for part in key:
            inner = XXPRIME_5
            for i in range(len(part)):
                item = (<tuple> key[plan.src_part[field]])[plan.src_index[field]]
                if plan.fns[field] is None:
                    inner = _lane(inner, <Py_uhash_t> self._hash(field, item))
                else:
                    inner = _lane(inner, <Py_uhash_t> _image(plan, field, item, None))
                field += 1
            acc = _lane(acc, <Py_uhash_t> _finish(inner, len(part)))
        return _finish(acc, len(key))
