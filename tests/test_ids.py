"""Ids: hosted prefixes, 48 hex digits, never repeated."""

from __future__ import annotations

import re

from responsed.protocol.ids import new_id


def test_ids_are_prefixed_and_unique() -> None:
    ids = [new_id("resp") for _ in range(5000)]  # crosses several pool refills
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"resp_[0-9a-f]{48}", i) for i in ids)
    assert new_id("msg").startswith("msg_")
