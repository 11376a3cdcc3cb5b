"""Patterns are priced before they are compiled, refused past their bounds, and cached within a bound."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import regex
from cfv.domain import patterns
from cfv.domain.fields import ValueType
from cfv.domain.patterns import (
    CACHED_PATTERNS,
    MAX_PATTERN_WEIGHT,
    CostlyPattern,
    check_cost,
    compile_pattern,
    pattern_weight,
)
from cfv.domain.rules import RuleViolation, check_rules, parse_rules, rules_from_storage


@pytest.mark.parametrize(("pattern", "weight"), [
    ("abc", 3),
    (r"[A-Z]{3}-\d+", 5),
    ("a{1000}", 1000),
    ("(a{30}){30}", 900),                # nested repeats multiply
    ("(ab|cd){500}", 2000),              # a group weighs all its alternatives
    ("x{500,}", 500),                    # the mandatory part is unrolled
    (".{0,255}", 1),                     # an optional part is a loop
    ("a{,20}", 1),
    (r"\p{L}{5}", 5),                    # a braced escape is one atom
    ("[]{}]{9}", 9),                     # ']' first in a class is a literal
    (r"[a\]{]{7}", 7),
    (r"\{999\}", 5),                     # escaped braces are literals
    ("[a{2000}]", 1),                    # braces in a class are literals
    ("[](a{999}){999}]", 1),             # ... and so is all this, as for the engine
    ("(?:abc){e<=1}", 10),               # a fuzzy constraint is no repeat (its text counts, harmlessly)
])
def test_weight_counts_what_the_engine_unrolls(pattern: str, weight: int) -> None:
    assert pattern_weight(pattern) == weight


@pytest.mark.parametrize(("pattern", "message"), [
    ("a{1000000}", "repeats 1000000 times; at most 1000"),
    ("a{0,5000}", "repeats 5000 times"),
    ("(a{1000}){1000}", "unrolls to about 1000000 steps"),
    ("(ab|cd){500}", "unrolls to about 2000 steps"),
    ("a" * 501, "at most 500 characters"),
    # text the scan cannot place as a class or an escape argument reads as pattern, so it can only cost more
    (r"\p{(a{999}){999}}", "unrolls to about"),
    (r"(?V1)[[a-z]--[aeiou]](b{999}){9}", "unrolls to about"),
])
def test_costly_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(CostlyPattern, match=regex.escape(message)):
        check_cost(pattern)


def test_refusing_costs_no_compilation() -> None:
    started = time.perf_counter()
    with pytest.raises(CostlyPattern):
        compile_pattern("(?:a{1000}){1000}")
    assert time.perf_counter() - started < 0.05


def test_the_heaviest_allowed_pattern_is_cheap() -> None:
    pattern = f"a{{{MAX_PATTERN_WEIGHT}}}"
    compile_pattern.cache_clear()
    tracemalloc.start()
    try:
        compiled = compile_pattern(pattern)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compiled.fullmatch("a" * MAX_PATTERN_WEIGHT)
    assert held < 1024 * 1024


def test_slow_compilation_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "MAX_COMPILE_SECONDS", -1.0)
    compile_pattern.cache_clear()
    with pytest.raises(CostlyPattern, match="to compile"):
        compile_pattern("slow")


def test_compiled_patterns_stay_in_a_bounded_cache_of_their_own() -> None:
    compile_pattern.cache_clear()
    engine_cache = len(regex._main._cache)  # type: ignore[attr-defined]
    for n in range(CACHED_PATTERNS * 2):
        assert compile_pattern(f"x{n}y{{2}}").fullmatch(f"x{n}yy")
    info = compile_pattern.cache_info()
    assert info.currsize == CACHED_PATTERNS
    assert len(regex._main._cache) == engine_cache  # type: ignore[attr-defined]


def test_a_costly_rule_is_refused_when_set() -> None:
    with pytest.raises(ValueError, match="regex: repeats 1000000 times"):
        parse_rules(ValueType.STRING, False, {"regex": "a{1000000}"})


def test_a_costly_pattern_stored_before_pricing_fails_the_write_not_the_worker() -> None:
    stored = rules_from_storage({"regex": "(a{1000}){1000}", "max_length": 5})
    started = time.perf_counter()
    with pytest.raises(RuleViolation, match="cannot be checked: the field's pattern unrolls"):
        check_rules(stored, ValueType.STRING, "aaa")
    assert time.perf_counter() - started < 0.05


def test_rules_from_storage_do_not_compile() -> None:
    compile_pattern.cache_clear()
    rules_from_storage({"regex": "stored-[a-z]+"})
    assert compile_pattern.cache_info().currsize == 0
