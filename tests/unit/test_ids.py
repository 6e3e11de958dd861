"""Time-ordered identifiers in the UUIDv7 layout."""

from __future__ import annotations

import time
import uuid

from integration_hub.domain.ids import new_id


def test_new_id_is_a_canonical_uuid_string() -> None:
    raw = new_id()
    assert str(uuid.UUID(raw)) == raw  # lower-case, hyphenated, 36 characters
    assert len(raw) == 36


def test_new_id_is_a_version_7_uuid_with_the_rfc_variant() -> None:
    for _ in range(1000):
        parsed = uuid.UUID(new_id())
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_new_id_carries_the_current_unix_milliseconds_in_its_first_48_bits() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert before <= parsed.int >> 80 <= after


def test_ids_generated_across_milliseconds_sort_in_creation_order_as_strings() -> None:
    ids = []
    for _ in range(30):
        ids.append(new_id())
        time.sleep(0.002)
    assert sorted(ids) == ids


def test_ten_thousand_ids_are_unique() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)


def test_ids_from_the_same_millisecond_differ_in_their_random_bits() -> None:
    ids = [uuid.UUID(new_id()) for _ in range(1000)]
    random_parts = {u.int & ((1 << 62) - 1) for u in ids}
    assert len(random_parts) == len(ids)
    rand_a = {(u.int >> 64) & 0xFFF for u in ids}
    assert len(rand_a) > 1
