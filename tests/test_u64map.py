"""The unboxed 64-bit map that remembers which URLs a batch has seen."""

from __future__ import annotations

import random
import sys
from array import array

import pytest

from freepik_bg._u64map import U64Map, U64Set


def test_agrees_with_a_dict_through_growth_and_overwrites() -> None:
    rng = random.Random(7)
    ours, reference = U64Map(), {}
    keys = [rng.getrandbits(64) for _ in range(20_000)]
    # Keys that share their low bits probe past each other into the next slots.
    keys += [(i << 40) | 5 for i in range(1, 300)]
    for step, key in enumerate(keys + keys[::7]):  # a seventh of them overwritten
        value = rng.randrange(-(2**63), 2**63)
        ours[key] = reference[key] = value
        if step % 997 == 0:
            assert all(ours.get(k) == v for k, v in reference.items())
    assert len(ours) == len(reference)
    assert all(ours.get(k) == v for k, v in reference.items())
    absent = [rng.getrandbits(64) for _ in range(2_000)]
    assert all(ours.get(k) is None and k not in ours for k in absent if k not in reference)
    assert ours.nbytes <= 3 * 16 * len(reference)  # at least a third full


@pytest.mark.parametrize("key", [0, 1, 2**64 - 1])
def test_edge_keys(key: int) -> None:
    seen = U64Map()
    assert seen.get(key) is None
    seen[key] = -1
    assert seen.get(key) == -1
    assert key in seen
    with pytest.raises(OverflowError):
        seen[2**64] = 0


def test_far_smaller_than_a_dict() -> None:
    seen, plain = U64Map(), {}
    for i in range(50_000):
        key = random.Random(i).getrandbits(64)
        seen[key] = plain[key] = i
    boxed = sys.getsizeof(plain)
    boxed += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in plain.items())
    assert seen.nbytes * 2 < boxed


def test_the_set_agrees_with_a_set_through_growth() -> None:
    rng = random.Random(11)
    ours, reference = U64Set(), set()
    keys = [rng.getrandbits(64) for _ in range(20_000)] + [(i << 40) | 9 for i in range(300)]
    for step, key in enumerate(keys + keys[::5]):  # a fifth of them added twice
        ours.add(key)
        reference.add(key)
        if step % 1999 == 0:
            assert all(k in ours for k in reference)
    assert len(ours) == len(reference)
    assert set(ours) == reference
    absent = [rng.getrandbits(64) for _ in range(2_000)]
    assert not any(k in ours for k in absent if k not in reference)
    assert ours.nbytes <= 3 * 8 * len(reference)


def test_a_set_comes_back_from_its_table_as_it_was() -> None:
    ours = U64Set(random.Random(3).getrandbits(64) for _ in range(5_000))
    ours.add(0)
    back = U64Set.from_table(array("Q", ours.table().tobytes()))
    assert back is not None
    assert len(back) == len(ours)
    assert set(back) == set(ours)
    assert 0 in back
    for key in range(1, 5_000):  # and it takes more, growing on from there
        back.add(key)
    assert 4_999 in back
    assert len(back) == len(ours) + 4_999 - (1 in ours)


@pytest.mark.parametrize(
    "table",
    [
        array("Q", bytes(8 * 1000)),  # not a power of two
        array("Q", bytes(8 * 512)),  # under the minimum
        array("Q", [7] * 1024),  # full: a lookup of anything else would never end
        array("q", bytes(8 * 1024)),  # signed
    ],
)
def test_what_is_not_a_table_is_refused(table: array[int]) -> None:
    assert U64Set.from_table(table) is None
