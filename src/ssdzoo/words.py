"""Counts in messages: "1 image", "2 images"."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun``, in the plural (``noun`` + "s", or ``plural``) unless it is one.

    >>> counted(1, "image"), counted(0, "image"), counted(2, "box", "boxes")
    ('1 image', '0 images', '2 boxes')
    """
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
