"""Regular expressions a field's owner sets as a rule, bounded in what they cost to compile and to keep.

The ``regex`` engine unrolls a counted repeat: ``a{1000000}`` compiles for ~0.7 s into ~270 MB, and a
module-level cache would hold it until restart. So a pattern is priced before it is compiled: its *weight*
is the number of nodes it unrolls to (each atom 1; a group the sum of its parts; a repeat ``{m,n}``
multiplies what it repeats by ``m``, because only the mandatory part is unrolled, the rest is a loop).
A pattern may weigh :data:`MAX_PATTERN_WEIGHT` (about 25 ms and 125 KiB to compile), no count may exceed
:data:`MAX_REPEAT`, and compiling may take :data:`MAX_COMPILE_SECONDS` of CPU. Compiled patterns live in
a cache of :data:`CACHED_PATTERNS` entries, so what they hold is bounded too.

The price is an upper bound found by a scan of the text, not by the engine's parser (which is private and
changes between versions): anything the scan cannot read as a repeat counts as a literal, and text it
reads too eagerly (a comment, an escaped brace) can only raise the price.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

import regex

MAX_PATTERN_LENGTH = 500
MAX_REPEAT = 1000
MAX_PATTERN_WEIGHT = 1000
MAX_COMPILE_SECONDS = 0.1
CACHED_PATTERNS = 128

_COUNTED = re.compile(r"\{(\d*)(?:,(\d*))?\}")
#: An escape's braced argument (\p{L}, \N{EM DASH}, \x{263a}, \g<name>): only plain words, so no
#: pattern text can hide in one.
_ESCAPE_ARGUMENT = re.compile(r"[pPNxuUgkL](?:\{[\w .:=&+-]*\}|<[\w .:=&+-]*>)")


class CostlyPattern(ValueError):
    """A pattern refused for what it would cost; the message says which bound it passes."""


def pattern_weight(pattern: str) -> int:
    """An upper bound on the nodes ``pattern`` compiles to; raises :class:`CostlyPattern` on a count over
    :data:`MAX_REPEAT`."""
    groups: list[int] = [0]   # the weight so far of each open group, outermost first
    last = 0                   # the weight of the last atom, which a repeat multiplies
    i, end = 0, len(pattern)
    while i < end:
        char = pattern[i]
        if char == "\\":
            i = _after_escape(pattern, i)
            last = 1
        elif char == "[":
            i = _after_class(pattern, i)
            last = 1
        elif char == "(":
            groups.append(0)
            i += 1
            last = 0
            continue
        elif char == ")" and len(groups) > 1:
            last = max(1, groups.pop())
            i += 1
        elif char == "{" and (counted := _COUNTED.match(pattern, i)) and (counted[1] or counted[2]):
            low, high = counted[1], counted[2]
            for count in (low, high):
                if count and int(count) > MAX_REPEAT:
                    raise CostlyPattern(f"repeats {count} times; at most {MAX_REPEAT} are allowed")
            times = int(low) if low else 0
            groups[-1] += last * max(times - 1, 0)
            last *= max(times, 1)
            i = counted.end()
            continue
        else:
            i += 1
            last = 0 if char in "*+?|" else 1
        groups[-1] += last
    return sum(groups)


def check_cost(pattern: str) -> None:
    """Raise :class:`CostlyPattern` if ``pattern`` is too long or unrolls to too many nodes."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise CostlyPattern(f"must be at most {MAX_PATTERN_LENGTH} characters")
    weight = pattern_weight(pattern)
    if weight > MAX_PATTERN_WEIGHT:
        raise CostlyPattern(f"unrolls to about {weight} steps; at most {MAX_PATTERN_WEIGHT} are allowed "
                            "(a counted repeat such as {500} is unrolled; {0,500} is not)")


@lru_cache(maxsize=CACHED_PATTERNS)
def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled, once its cost is checked; raises :class:`CostlyPattern` or ``regex.error``.

    Kept in a bounded cache of its own: the engine's module cache is bypassed, so it never grows."""
    check_cost(pattern)
    started = time.process_time()
    compiled = regex.compile(pattern, cache_pattern=False)
    if time.process_time() - started > MAX_COMPILE_SECONDS:
        raise CostlyPattern(f"takes more than {MAX_COMPILE_SECONDS:g} s to compile")
    return compiled


def _after_escape(pattern: str, i: int) -> int:
    """The index after the escape starting at ``pattern[i] == '\\'``, a plain braced argument included."""
    argument = _ESCAPE_ARGUMENT.match(pattern, i + 1)
    return argument.end() if argument else i + 2


def _after_class(pattern: str, i: int) -> int:
    """The index after the character class opening at ``pattern[i] == '['``.

    The class ends at the first unescaped ``]`` not first in it (the ``regex`` engine's default syntax).
    A nested set of its version 1 syntax, ``[[a-z]--[aeiou]]``, then ends early and the rest reads as
    atoms: that can only raise the price, never hide a repeat inside a class."""
    j, end = i + 1, len(pattern)
    if j < end and pattern[j] == "^":
        j += 1
    if j < end and pattern[j] == "]":
        j += 1
    while j < end:
        if pattern[j] == "\\":
            j += 2
        elif pattern[j] == "]":
            return j + 1
        else:
            j += 1
    return end
