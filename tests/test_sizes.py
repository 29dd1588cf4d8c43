"""One size formatter (issue 16): binary units that say so, the same string everywhere."""

from __future__ import annotations

import pytest

from talktuah.sizes import format_bytes, format_speed


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (240_128, "234.5 KiB"),
        (1_048_575, "1.0 MiB"),  # rounds up into the next unit, never "1024.0 KiB"
        (2_000_000, "1.9 MiB"),
        (int(3.5 * 1024**3), "3.5 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (None, "-"),
    ],
)
def test_binary_units_labelled_as_such(size: int | None, text: str) -> None:
    assert format_bytes(size) == text


def test_speed_uses_the_same_units() -> None:
    assert format_speed(2.5 * 1024 * 1024) == "2.5 MiB/s"
    assert format_speed(None) == "-"
