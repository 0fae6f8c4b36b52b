"""Which codebook a preset codes with in ``semcom sim run`` (several ``--codebook``): the one
of the largest code within its ``uplink.codebook_max_bytes``, as an edge installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.errors import MeasureError
from sim.runner import max_code_bytes, pick_codebook

BOOKS = [(Path("pq32.npz"), 32), (Path("pq64.npz"), 64), (Path("pq16.npz"), 16)]


def test_the_largest_code_within_the_limit_wins() -> None:
    assert pick_codebook(BOOKS, 64, "semcom") == Path("pq64.npz")
    assert pick_codebook(BOOKS, 63, "semcom") == Path("pq32.npz")
    assert pick_codebook(BOOKS, 32, "semcom-lean") == Path("pq32.npz")
    assert pick_codebook(BOOKS, 16, "semcom-lean") == Path("pq16.npz")


def test_no_codebook_within_the_limit_is_a_precise_error() -> None:
    with pytest.raises(MeasureError) as err:
        pick_codebook(BOOKS, 8, "semcom-lean")
    assert str(err.value) == (
        "no --codebook fits semcom-lean's uplink.codebook_max_bytes 8 "
        "(pq32.npz 32 B, pq64.npz 64 B, pq16.npz 16 B)"
    )


def test_a_preset_without_the_setting_gets_the_edge_default() -> None:
    from edge.config import UplinkConfig

    default = UplinkConfig.model_fields["codebook_max_bytes"].default
    assert max_code_bytes(None) == default == 64
    assert max_code_bytes(32) == 32
