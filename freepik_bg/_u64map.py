"""A map from 64-bit keys to 64-bit ints in ~24 bytes an entry, for sets of millions.

A ``dict`` of ints costs ~110 bytes an entry (two int objects and the table), so a
batch of 10 million distinct URLs would hold over a gigabyte just to know which it
has seen. Here keys and values sit unboxed in two arrays, open-addressed with
linear probing, at most 2/3 full. Keys are hashes already (uniform bits), so a
key's low bits are its home slot. Key 0 marks an empty slot and is stored as 1:
two keys in 2**64 share a slot, as likely as any other 64-bit collision.
"""

from __future__ import annotations

from array import array

__all__ = ["U64Map"]

_MIN_CAPACITY = 1024


class U64Map:
    """``key -> value`` for unsigned 64-bit keys and signed 64-bit values.

    Examples:
        >>> seen = U64Map()
        >>> seen[2**63 + 5] = 7
        >>> seen.get(2**63 + 5), seen.get(6), len(seen)
        (7, None, 1)
    """

    __slots__ = ("_keys", "_mask", "_size", "_values")

    def __init__(self) -> None:
        self._size = 0
        self._allocate(_MIN_CAPACITY)

    def _allocate(self, capacity: int) -> None:
        self._keys = array("Q", bytes(8 * capacity))
        self._values = array("q", bytes(8 * capacity))
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

    def get(self, key: int) -> int | None:
        """The value of ``key``, or ``None``."""
        key = key or 1
        slot = self._slot(key)
        return self._values[slot] if self._keys[slot] else None

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: int, value: int) -> None:
        key = key or 1
        slot = self._slot(key)
        if not self._keys[slot]:
            if 3 * (self._size + 1) > 2 * (self._mask + 1):
                self._grow()
                slot = self._slot(key)
            self._keys[slot] = key
            self._size += 1
        self._values[slot] = value

    def _grow(self) -> None:
        keys, values = self._keys, self._values
        self._allocate(2 * (self._mask + 1))
        for slot, key in enumerate(keys):
            if key:
                new = self._slot(key)
                self._keys[new] = key
                self._values[new] = values[slot]

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays."""
        return 16 * (self._mask + 1)
