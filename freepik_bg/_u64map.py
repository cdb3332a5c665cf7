"""Sets and maps of 64-bit keys, unboxed, for the millions of URLs a batch remembers.

A ``set`` of ints costs ~75 bytes an entry (an int object and the table) and a ``dict``
of ints ~110, so a batch of 10 million distinct URLs would hold over a gigabyte just to
know which it has seen, and a journal of 10 million stored items as much to know which
are done. Here keys (and values) sit unboxed in arrays, open-addressed with linear
probing, at most 2/3 full: 12 to 24 bytes a key, 16 to 48 with a value. Keys are hashes
already (uniform bits), so a key's low bits are its home slot. Key 0 marks an empty
slot and is stored as 1: two keys in 2**64 share a slot, as likely as any other 64-bit
collision.

A set's table is also its serialised form (`U64Set.table`, `U64Set.from_table`): a
journal's checkpoint stores and loads it as one block of bytes, with no per-key work.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

__all__ = ["U64Map", "U64Set"]

_MIN_CAPACITY = 1024


class U64Set:
    """A set of unsigned 64-bit keys.

    Examples:
        >>> done = U64Set([5])
        >>> done.add(2**63)
        >>> 2**63 in done, 6 in done, len(done)
        (True, False, 2)
    """

    __slots__ = ("_keys", "_mask", "_size")

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._size = 0
        self._allocate(_MIN_CAPACITY)
        for key in keys:
            self.add(key)

    def _allocate(self, capacity: int) -> None:
        self._keys = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1

    def _slot(self, key: int) -> int:
        """Where ``key`` is, or the empty slot where it would go."""
        keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key or found == 0:
                return slot
            slot = (slot + 1) & mask

    def _insert(self, key: int) -> int:
        """The slot of ``key`` (nonzero), which is added if it was not there."""
        slot = self._slot(key)
        if not self._keys[slot]:
            if 3 * (self._size + 1) > 2 * (self._mask + 1):
                self._grow()
                slot = self._slot(key)
            self._keys[slot] = key
            self._size += 1
        return slot

    def _grow(self) -> None:
        keys = self._keys
        self._allocate(2 * (self._mask + 1))
        for key in keys:
            if key:
                self._keys[self._slot(key)] = key

    # add() and `in` probe inline, without _slot(): a journal asks them for every item.
    def add(self, key: int) -> None:
        """Add ``key``."""
        key = key or 1
        keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return
            if found == 0:
                break
            slot = (slot + 1) & mask
        if 3 * (self._size + 1) > 2 * (mask + 1):
            self._grow()
            slot = self._slot(key)
        self._keys[slot] = key
        self._size += 1

    def __contains__(self, key: int) -> bool:
        key = key or 1
        keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return True
            if found == 0:
                return False
            slot = (slot + 1) & mask

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        """The keys, in table order (a key 0 comes out as 1, which it is stored as)."""
        return (key for key in self._keys if key)

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return 8 * (self._mask + 1)

    def table(self) -> array[int]:
        """The table itself (not a copy): what `from_table` takes back."""
        return self._keys

    @staticmethod
    def from_table(table: array[int]) -> U64Set | None:
        """The set whose `table` is ``table`` (kept, not copied); None if ``table`` is not
        one (its length not a power of two of at least the minimum, or over 2/3 full)."""
        capacity = len(table)
        if table.typecode != "Q" or capacity < _MIN_CAPACITY or capacity & (capacity - 1):
            return None
        size = capacity - table.count(0)
        if 3 * size > 2 * capacity:
            return None
        done = U64Set.__new__(U64Set)
        done._keys, done._mask, done._size = table, capacity - 1, size
        return done


class U64Map(U64Set):
    """``key -> value`` for unsigned 64-bit keys and signed 64-bit values.

    Examples:
        >>> seen = U64Map()
        >>> seen[2**63 + 5] = 7
        >>> seen.get(2**63 + 5), seen.get(6), len(seen)
        (7, None, 1)
    """

    __slots__ = ("_values",)

    def _allocate(self, capacity: int) -> None:
        super()._allocate(capacity)
        self._values = array("q", bytes(8 * capacity))

    def _grow(self) -> None:
        keys, values = self._keys, self._values
        self._allocate(2 * (self._mask + 1))
        for slot, key in enumerate(keys):
            if key:
                new = self._slot(key)
                self._keys[new] = key
                self._values[new] = values[slot]

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays."""
        return 16 * (self._mask + 1)

    def get(self, key: int) -> int | None:
        """The value of ``key``, or ``None``."""
        key = key or 1
        slot = self._slot(key)
        return self._values[slot] if self._keys[slot] else None

    def __setitem__(self, key: int, value: int) -> None:
        slot = self._insert(key or 1)  # first: it may grow, and so replace, the arrays
        self._values[slot] = value
