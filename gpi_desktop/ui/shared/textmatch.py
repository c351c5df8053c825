"""How closely a generated text matches its input, for the repeat task's preview."""

from __future__ import annotations

from difflib import SequenceMatcher


def similarity(source: str, generated: str) -> float:
    """Share of matching characters between the two texts, 0.0 to 1.0 (1.0: identical).

    Whitespace runs count as one space, so a repeat that only differs in line
    breaks or trailing spaces scores 1.0.
    """
    a, b = " ".join(source.split()), " ".join(generated.split())
    if not a and not b:
        return 1.0
    # autojunk=False: the default treats frequent characters as junk in texts over 200 characters,
    # which would understate the match of long, faithful repeats.
    return SequenceMatcher(None, a, b, autojunk=False).ratio()
