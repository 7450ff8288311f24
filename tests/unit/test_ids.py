"""Ordered ids: the shape of every other id, text that sorts by creation time."""

from __future__ import annotations

import time

from royalties import ids
from royalties.ids import looks_like_id, new_id, new_ordered_id


def test_ordered_ids_have_the_shape_of_every_id() -> None:
    made = [new_ordered_id("evt") for _ in range(200)]
    assert all(looks_like_id(value) and value.startswith("evt_") for value in made)
    assert len({len(value) for value in [*made, new_id("evt")]}) == 1
    assert len(set(made)) == 200  # the random tail tells apart ids of one millisecond


def test_ordered_ids_sort_by_the_millisecond_they_were_made_in() -> None:
    assert list(ids._ALPHABET) == sorted(ids._ALPHABET)  # text order is number order
    made = []
    for _ in range(20):
        made.append(new_ordered_id("pur"))
        time.sleep(0.002)
    assert made == sorted(made)
    stamps = {value[4 : 4 + ids._TIME_CHARS] for value in made}
    assert len(stamps) == 20


def test_the_time_part_is_the_time() -> None:
    before = time.time_ns() // 1_000_000
    value = new_ordered_id("rwd")
    after = time.time_ns() // 1_000_000
    ms = 0
    for char in value[4 : 4 + ids._TIME_CHARS]:
        ms = ms * 32 + ids._ALPHABET.index(char)
    assert before <= ms <= after
