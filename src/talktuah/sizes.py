"""Byte sizes for people: one formatter, binary units labelled as such (KiB, MiB, GiB).

The CLI, the API's message text and the dashboard (`formatBytes` in ui/static/js/dom.js
follows the same rules) print the same string for the same number, so a size read in one
place can be found in another. Units are powers of 1024 and say so: "KB" for 1024 bytes
made 1.9 "MB" in one place read as 2.0 "MB" in another.
"""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: float | None) -> str:
    """1536 -> "1.5 KiB"; whole bytes below 1 KiB, one decimal above; None -> "-"."""
    if size is None:
        return "-"
    value = float(size)
    unit = 0
    # Compare the rounded value, so 1023.97 KiB reads "1.0 MiB" rather than "1024.0 KiB".
    while unit < len(UNITS) - 1 and round(abs(value), 1 if unit else 0) >= 1024:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(round(value))} B"
    return f"{value:.1f} {UNITS[unit]}"


def format_speed(bytes_per_second: float | None) -> str:
    """A transfer rate in the same units: "2.4 MiB/s"."""
    return "-" if bytes_per_second is None else f"{format_bytes(bytes_per_second)}/s"
