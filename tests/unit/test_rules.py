"""Validation rules: which rules suit which field, parsing them (every problem named), checking values."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from typing import Any

import pytest
from cfv.domain.fields import ValueType
from cfv.domain.patterns import MAX_PATTERN_LENGTH
from cfv.domain.rules import (
    NO_RULES,
    InvalidRules,
    RuleViolation,
    ValueRules,
    applicable_rules,
    check_rules,
    parse_rules,
    rules_from_storage,
)

NUMERIC_RULES = ("min", "max")
TEXT_RULES = ("min_length", "max_length", "regex")
DATE_RULES = ("min_date", "max_date")


@pytest.mark.parametrize(("value_type", "is_multi", "names"), [
    (ValueType.NUMBER, False, NUMERIC_RULES),
    (ValueType.CURRENCY, False, NUMERIC_RULES),
    (ValueType.STRING, False, TEXT_RULES),
    (ValueType.URL, False, TEXT_RULES),
    (ValueType.EMAIL, False, TEXT_RULES),
    (ValueType.FILE, False, TEXT_RULES),
    (ValueType.DATE, False, DATE_RULES),
    (ValueType.DATETIME, False, DATE_RULES),
    (ValueType.BOOLEAN, False, ()),
    (ValueType.SINGLE, False, ()),
    (ValueType.MULTI, True, ("max_count",)),
    (ValueType.RELATION, False, ()),
    (ValueType.RELATION, True, ("max_count",)),
], ids=lambda v: str(v))
def test_applicable_rules_by_type(value_type: ValueType, is_multi: bool, names: tuple[str, ...]) -> None:
    assert applicable_rules(value_type, is_multi) == names


# (value type, is multi, raw rules, parsed)
VALID_RULES: list[tuple[ValueType, bool, Any, ValueRules]] = [
    (ValueType.NUMBER, False, {"min": 0, "max": 10}, ValueRules(min=0, max=10)),
    (ValueType.NUMBER, False, {"min": -2.5}, ValueRules(min=-2.5)),
    (ValueType.NUMBER, False, {"max": 1e300}, ValueRules(max=1e300)),
    (ValueType.NUMBER, False, {"min": 5, "max": 5}, ValueRules(min=5, max=5)),  # equal bounds
    (ValueType.CURRENCY, False, {"min": 0, "max": 1_000_000}, ValueRules(min=0, max=1_000_000)),
    (ValueType.STRING, False, {"min_length": 0, "max_length": 0}, ValueRules(min_length=0, max_length=0)),
    (ValueType.STRING, False, {"min_length": 3, "max_length": 3}, ValueRules(min_length=3, max_length=3)),
    (ValueType.STRING, False, {"regex": r"[A-Z]{3}-\d+"}, ValueRules(regex=r"[A-Z]{3}-\d+")),
    (ValueType.STRING, False, {"regex": "a" * MAX_PATTERN_LENGTH}, ValueRules(regex="a" * MAX_PATTERN_LENGTH)),
    (ValueType.URL, False, {"max_length": 200, "regex": r"https://example\.com/.*"},
     ValueRules(max_length=200, regex=r"https://example\.com/.*")),
    (ValueType.EMAIL, False, {"regex": r".*@example\.com"}, ValueRules(regex=r".*@example\.com")),
    (ValueType.FILE, False, {"min_length": 5}, ValueRules(min_length=5)),
    (ValueType.DATE, False, {"min_date": "2024-01-01", "max_date": "2024-12-31"},
     ValueRules(min_date=date(2024, 1, 1), max_date=date(2024, 12, 31))),
    (ValueType.DATE, False, {"min_date": "2024-02-29", "max_date": "2024-02-29"},
     ValueRules(min_date=date(2024, 2, 29), max_date=date(2024, 2, 29))),
    (ValueType.DATETIME, False, {"max_date": "2030-06-30"}, ValueRules(max_date=date(2030, 6, 30))),
    (ValueType.MULTI, True, {"max_count": 1}, ValueRules(max_count=1)),
    (ValueType.RELATION, True, {"max_count": 100}, ValueRules(max_count=100)),
    (ValueType.NUMBER, False, {}, ValueRules()),
    (ValueType.BOOLEAN, False, {}, ValueRules()),
]


def _rules_id(case: tuple[Any, ...]) -> str:
    value_type, is_multi, raw = case[:3]
    text = repr(raw)
    return f"{value_type}{'-multi' if is_multi else ''}:{text if len(text) <= 50 else text[:47] + '...'}"


@pytest.mark.parametrize("case", VALID_RULES, ids=[_rules_id(c) for c in VALID_RULES])
def test_valid_rules_are_parsed(case: tuple[ValueType, bool, Any, ValueRules]) -> None:
    value_type, is_multi, raw, parsed = case
    assert parse_rules(value_type, is_multi, raw) == parsed


def test_no_rules_at_all_is_no_rules() -> None:
    assert parse_rules(ValueType.NUMBER, False, None) is NO_RULES
    assert ValueRules() == NO_RULES


# (value type, is multi, raw rules, {rule: part of its problem}): exactly these rules have problems
INVALID_RULES: list[tuple[ValueType, bool, Any, dict[str, str]]] = [
    # a rule of another type
    (ValueType.NUMBER, False, {"min_length": 1},
     {"min_length": "not a rule of a number field; its rules are min, max"}),
    (ValueType.CURRENCY, False, {"regex": "x"}, {"regex": "not a rule of a currency field; its rules are min, max"}),
    (ValueType.STRING, False, {"min": 1},
     {"min": "not a rule of a string field; its rules are min_length, max_length, regex"}),
    (ValueType.EMAIL, False, {"min_date": "2024-01-01"}, {"min_date": "not a rule of a email field"}),
    (ValueType.DATE, False, {"regex": "x"}, {"regex": "not a rule of a date field; its rules are min_date, max_date"}),
    (ValueType.DATETIME, False, {"max": 3}, {"max": "not a rule of a datetime field"}),
    (ValueType.BOOLEAN, False, {"min": 0}, {"min": "not a rule of a boolean field; it has none"}),
    (ValueType.MULTI, True, {"min_length": 1}, {"min_length": "not a rule of a multi field; its rules are max_count"}),
    (ValueType.NUMBER, False, {"minimum": 1}, {"minimum": "not a rule of a number field"}),
    (ValueType.NUMBER, False, {"MIN": 1}, {"MIN": "not a rule of a number field"}),
    # max_count only on multi-valued fields
    (ValueType.SINGLE, False, {"max_count": 1}, {"max_count": "not a rule of a single field; it has none"}),
    (ValueType.RELATION, False, {"max_count": 1}, {"max_count": "not a rule of a relation field; it has none"}),
    (ValueType.STRING, False, {"max_count": 1}, {"max_count": "not a rule of a string field"}),
    # numbers
    (ValueType.NUMBER, False, {"min": True}, {"min": "must be a finite number"}),
    (ValueType.NUMBER, False, {"max": False}, {"max": "must be a finite number"}),
    (ValueType.NUMBER, False, {"min": "5"}, {"min": "must be a finite number"}),
    (ValueType.NUMBER, False, {"max": [5]}, {"max": "must be a finite number"}),
    (ValueType.NUMBER, False, {"min": float("nan")}, {"min": "must be a finite number"}),
    (ValueType.CURRENCY, False, {"max": float("inf")}, {"max": "must be a finite number"}),
    (ValueType.CURRENCY, False, {"min": float("-inf")}, {"min": "must be a finite number"}),
    # lengths
    (ValueType.STRING, False, {"min_length": -1}, {"min_length": "must be a whole number, 0 or more"}),
    (ValueType.STRING, False, {"max_length": 2.5}, {"max_length": "must be a whole number, 0 or more"}),
    (ValueType.STRING, False, {"max_length": 3.0}, {"max_length": "must be a whole number, 0 or more"}),
    (ValueType.URL, False, {"max_length": True}, {"max_length": "must be a whole number, 0 or more"}),
    (ValueType.FILE, False, {"min_length": "3"}, {"min_length": "must be a whole number, 0 or more"}),
    # counts
    (ValueType.MULTI, True, {"max_count": 0}, {"max_count": "must be a whole number, 1 or more"}),
    (ValueType.MULTI, True, {"max_count": -1}, {"max_count": "must be a whole number, 0 or more"}),
    (ValueType.MULTI, True, {"max_count": True}, {"max_count": "must be a whole number"}),
    (ValueType.RELATION, True, {"max_count": 1.0}, {"max_count": "must be a whole number"}),
    (ValueType.RELATION, True, {"max_count": "2"}, {"max_count": "must be a whole number"}),
    # patterns
    (ValueType.STRING, False, {"regex": "("}, {"regex": "is not a valid regular expression"}),
    (ValueType.STRING, False, {"regex": "[a-"}, {"regex": "is not a valid regular expression"}),
    (ValueType.EMAIL, False, {"regex": "a{2,1}"}, {"regex": "is not a valid regular expression"}),
    (ValueType.STRING, False, {"regex": ""}, {"regex": "must be a regular expression"}),
    (ValueType.STRING, False, {"regex": 5}, {"regex": "must be a regular expression"}),
    (ValueType.STRING, False, {"regex": ["a"]}, {"regex": "must be a regular expression"}),
    (ValueType.STRING, False, {"regex": "a" * (MAX_PATTERN_LENGTH + 1)},
     {"regex": f"must be at most {MAX_PATTERN_LENGTH} characters"}),
    # dates
    (ValueType.DATE, False, {"min_date": "2024-02-30"}, {"min_date": "must be a date as YYYY-MM-DD"}),
    (ValueType.DATE, False, {"max_date": "2024-1-1"}, {"max_date": "must be a date as YYYY-MM-DD"}),
    (ValueType.DATE, False, {"min_date": "20240101"}, {"min_date": "must be a date as YYYY-MM-DD"}),
    (ValueType.DATE, False, {"min_date": 20240101}, {"min_date": "must be a date as YYYY-MM-DD"}),
    (ValueType.DATETIME, False, {"max_date": "2024-01-01T00:00:00"}, {"max_date": "must be a date as YYYY-MM-DD"}),
    (ValueType.DATE, False, {"min_date": "01/02/2024"}, {"min_date": "must be a date as YYYY-MM-DD"}),
    # An ISO week date is ten characters too, but not YYYY-MM-DD.
    (ValueType.DATE, False, {"min_date": "2021-W01-1"}, {"min_date": "must be a date as YYYY-MM-DD"}),
    # a low bound above its high bound
    (ValueType.NUMBER, False, {"min": 5, "max": 4}, {"min": "must not be greater than max"}),
    (ValueType.CURRENCY, False, {"min": 0.5, "max": 0.25}, {"min": "must not be greater than max"}),
    (ValueType.STRING, False, {"min_length": 3, "max_length": 2},
     {"min_length": "must not be greater than max_length"}),
    (ValueType.DATE, False, {"min_date": "2024-02-01", "max_date": "2024-01-31"},
     {"min_date": "must not be greater than max_date"}),
    (ValueType.DATETIME, False, {"min_date": "2025-01-01", "max_date": "2024-12-31"},
     {"min_date": "must not be greater than max_date"}),
    # every problem at once, each under its rule
    (ValueType.NUMBER, False, {"min": "x", "max": True, "regex": "a"},
     {"min": "must be a finite number", "max": "must be a finite number", "regex": "not a rule of a number field"}),
    (ValueType.STRING, False, {"min_length": 9, "max_length": 1, "regex": "(", "min": 1},
     {"min_length": "must not be greater than max_length", "regex": "is not a valid regular expression",
      "min": "not a rule of a string field"}),
    # not an object
    (ValueType.NUMBER, False, [], {"validation_rules": "must be an object"}),
    (ValueType.NUMBER, False, ["min", 1], {"validation_rules": "must be an object"}),
    (ValueType.STRING, False, "min_length=3", {"validation_rules": "must be an object"}),
    (ValueType.NUMBER, False, 5, {"validation_rules": "must be an object"}),
    (ValueType.BOOLEAN, False, True, {"validation_rules": "must be an object"}),
]


@pytest.mark.parametrize("case", INVALID_RULES, ids=[_rules_id(c) for c in INVALID_RULES])
def test_invalid_rules_name_each_problem(case: tuple[ValueType, bool, Any, dict[str, str]]) -> None:
    value_type, is_multi, raw, problems = case
    with pytest.raises(InvalidRules) as raised:
        parse_rules(value_type, is_multi, raw)
    assert set(raised.value.problems) == set(problems)
    for rule, problem in problems.items():
        assert problem in raised.value.problems[rule]
        assert f"{rule}: {raised.value.problems[rule]}" in str(raised.value)


def test_invalid_rules_message_joins_every_problem() -> None:
    with pytest.raises(InvalidRules) as raised:
        parse_rules(ValueType.NUMBER, False, {"min": "x", "max_length": 1})
    assert str(raised.value) == (
        "min: must be a finite number; max_length: not a rule of a number field; its rules are min, max"
    )
    assert isinstance(raised.value, ValueError)


def rules(value_type: ValueType, raw: dict[str, Any], is_multi: bool = False) -> ValueRules:
    return parse_rules(value_type, is_multi, raw)


NUMBER_0_TO_10 = rules(ValueType.NUMBER, {"min": 0, "max": 10})
NUMBER_HALVES = rules(ValueType.NUMBER, {"min": 2.5, "max": 5.0})
CURRENCY_0_TO_100 = rules(ValueType.CURRENCY, {"min": 0, "max": 100})
STRING_2_TO_4 = rules(ValueType.STRING, {"min_length": 2, "max_length": 4})
CODE = rules(ValueType.STRING, {"regex": r"[a-z]+\d"})
YEAR_2024 = {"min_date": "2024-01-01", "max_date": "2024-12-31"}
MULTI_UP_TO_2 = rules(ValueType.MULTI, {"max_count": 2}, is_multi=True)

# (rules, value type, canonical value, None if kept or part of the violation)
CHECKS: list[tuple[ValueRules, ValueType, Any, str | None]] = [
    # number: inclusive bounds
    (NUMBER_0_TO_10, ValueType.NUMBER, 0, None),
    (NUMBER_0_TO_10, ValueType.NUMBER, 10, None),
    (NUMBER_0_TO_10, ValueType.NUMBER, 5.5, None),
    (NUMBER_0_TO_10, ValueType.NUMBER, -1, "must be at least 0"),
    (NUMBER_0_TO_10, ValueType.NUMBER, -0.001, "must be at least 0"),
    (NUMBER_0_TO_10, ValueType.NUMBER, 11, "must be at most 10"),
    (NUMBER_0_TO_10, ValueType.NUMBER, 10.000001, "must be at most 10"),
    (NUMBER_HALVES, ValueType.NUMBER, 2.5, None),
    (NUMBER_HALVES, ValueType.NUMBER, 5, None),
    (NUMBER_HALVES, ValueType.NUMBER, 2.4999, "must be at least 2.5"),
    (NUMBER_HALVES, ValueType.NUMBER, 5.01, "must be at most 5"),  # 5.0 reads as 5
    (rules(ValueType.NUMBER, {"min": 3}), ValueType.NUMBER, 10**30, None),
    (rules(ValueType.NUMBER, {"max": 3}), ValueType.NUMBER, -(10**30), None),
    # currency: the amount, whatever the currency
    (CURRENCY_0_TO_100, ValueType.CURRENCY, [0, "JPY"], None),
    (CURRENCY_0_TO_100, ValueType.CURRENCY, [100, "USD"], None),
    (CURRENCY_0_TO_100, ValueType.CURRENCY, [100.01, "EUR"], "must be at most 100"),
    (CURRENCY_0_TO_100, ValueType.CURRENCY, [-1, "USD"], "must be at least 0"),
    # string lengths, in characters
    (STRING_2_TO_4, ValueType.STRING, "ab", None),
    (STRING_2_TO_4, ValueType.STRING, "abcd", None),
    (STRING_2_TO_4, ValueType.STRING, "éé", None),
    (STRING_2_TO_4, ValueType.STRING, "✓✓✓✓", None),
    (STRING_2_TO_4, ValueType.STRING, "a", "must be at least 2 characters long"),
    (STRING_2_TO_4, ValueType.STRING, "", "must be at least 2 characters long"),
    (STRING_2_TO_4, ValueType.STRING, "abcde", "must be at most 4 characters long"),
    (STRING_2_TO_4, ValueType.STRING, "✓✓✓✓✓", "must be at most 4 characters long"),
    (rules(ValueType.FILE, {"max_length": 5}), ValueType.FILE, "a.pdf", None),
    (rules(ValueType.FILE, {"max_length": 5}), ValueType.FILE, "ab.pdf", "must be at most 5 characters long"),
    (rules(ValueType.URL, {"min_length": 20}), ValueType.URL, "https://example.com", "at least 20 characters"),
    (rules(ValueType.EMAIL, {"max_length": 13}), ValueType.EMAIL, "a@example.com", None),
    (rules(ValueType.EMAIL, {"max_length": 13}), ValueType.EMAIL, "ab@example.com", "at most 13 characters"),
    # the whole value must match the pattern
    (CODE, ValueType.STRING, "abc1", None),
    (CODE, ValueType.STRING, "a9", None),
    (CODE, ValueType.STRING, "abc12", "must match the pattern [a-z]+\\d"),
    (CODE, ValueType.STRING, "1abc1", "must match the pattern [a-z]+\\d"),
    (CODE, ValueType.STRING, "abc1\n", "must match the pattern"),
    (CODE, ValueType.STRING, "ABC1", "must match the pattern"),
    (CODE, ValueType.STRING, "", "must match the pattern"),
    (rules(ValueType.STRING, {"regex": "a|ab"}), ValueType.STRING, "ab", None),  # fullmatch, not match
    (rules(ValueType.STRING, {"regex": r"\p{Lu}\p{Ll}+"}), ValueType.STRING, "Élan", None),
    (rules(ValueType.STRING, {"regex": r"\p{Lu}\p{Ll}+"}), ValueType.STRING, "élan", "must match the pattern"),
    (rules(ValueType.URL, {"regex": r"https://example\.com/.*"}), ValueType.URL, "https://example.com/x", None),
    (rules(ValueType.URL, {"regex": r"https://example\.com/.*"}), ValueType.URL, "https://evil.com/x",
     "must match the pattern"),
    (rules(ValueType.EMAIL, {"regex": r".*@example\.com"}), ValueType.EMAIL, "bob@example.com", None),
    (rules(ValueType.EMAIL, {"regex": r".*@example\.com"}), ValueType.EMAIL, "bob@example.com.evil.org",
     "must match the pattern"),
    (rules(ValueType.FILE, {"regex": r".*\.pdf"}), ValueType.FILE, "report.pdf", None),
    (rules(ValueType.FILE, {"regex": r".*\.pdf"}), ValueType.FILE, "report.pdf.exe", "must match the pattern"),
    # dates: inclusive, on the calendar date
    (rules(ValueType.DATE, YEAR_2024), ValueType.DATE, "2024-01-01", None),
    (rules(ValueType.DATE, YEAR_2024), ValueType.DATE, "2024-12-31", None),
    (rules(ValueType.DATE, YEAR_2024), ValueType.DATE, "2023-12-31", "must be on or after 2024-01-01"),
    (rules(ValueType.DATE, YEAR_2024), ValueType.DATE, "2025-01-01", "must be on or before 2024-12-31"),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2024-01-01T00:00:00", None),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2024-12-31T23:59:59.999999", None),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2024-12-31", None),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2023-12-31T23:59:59",
     "must be on or after 2024-01-01"),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2025-01-01T00:00:00",
     "must be on or before 2024-12-31"),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2025-01-01", "must be on or before 2024-12-31"),
    # the date as written, not in UTC
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2024-12-31T23:30:00-05:00", None),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2025-01-01T00:30:00+02:00",
     "must be on or before 2024-12-31"),
    (rules(ValueType.DATETIME, YEAR_2024), ValueType.DATETIME, "2024-01-01T00:30:00+02:00", None),
    # counts
    (MULTI_UP_TO_2, ValueType.MULTI, [1], None),
    (MULTI_UP_TO_2, ValueType.MULTI, [1, 2], None),
    (MULTI_UP_TO_2, ValueType.MULTI, [1, 2, 3], "must list at most 2 items"),
    (rules(ValueType.RELATION, {"max_count": 1}, is_multi=True), ValueType.RELATION, [7], None),
    (rules(ValueType.RELATION, {"max_count": 1}, is_multi=True), ValueType.RELATION, [7, 8],
     "must list at most 1 items"),
    # no rules: anything goes
    (NO_RULES, ValueType.NUMBER, -(10**30), None),
    (NO_RULES, ValueType.STRING, "x" * 10_000, None),
    (NO_RULES, ValueType.MULTI, list(range(100)), None),
    (ValueRules(), ValueType.DATE, "0001-01-01", None),
]


def _check_id(case: tuple[ValueRules, ValueType, Any, str | None]) -> str:
    rule_set, value_type, value, violation = case
    text = repr(value)
    return (f"{value_type}:{rule_set.as_json()}:{text if len(text) <= 30 else text[:27] + '...'}:"
            f"{'ok' if violation is None else 'refused'}")


@pytest.mark.parametrize("case", CHECKS, ids=[_check_id(c) for c in CHECKS])
def test_check_rules(case: tuple[ValueRules, ValueType, Any, str | None]) -> None:
    rule_set, value_type, value, violation = case
    if violation is None:
        assert check_rules(rule_set, value_type, value) is None
    else:
        with pytest.raises(RuleViolation, match=re.escape(violation)):
            check_rules(rule_set, value_type, value)


def test_rules_of_other_types_are_not_checked() -> None:
    # Rules parsed for one type say nothing about a value of another (say, once a field was retyped).
    assert check_rules(STRING_2_TO_4, ValueType.NUMBER, 99) is None
    assert check_rules(NUMBER_0_TO_10, ValueType.STRING, "a long text") is None
    assert check_rules(MULTI_UP_TO_2, ValueType.CURRENCY, [1, "USD"]) is None


def test_a_pathological_pattern_times_out_as_a_violation() -> None:
    catastrophic = rules(ValueType.STRING, {"regex": "(a|aa)+b"})
    started = time.monotonic()
    with pytest.raises(RuleViolation, match=re.escape("could not be checked against the pattern (a|aa)+b in time")):
        check_rules(catastrophic, ValueType.STRING, "a" * 60)
    assert time.monotonic() - started < 2
    # the same pattern on a value it settles quickly is fine
    assert check_rules(catastrophic, ValueType.STRING, "aab") is None


# as_json / rules_from_storage


def test_as_json_has_only_the_rules_that_are_set() -> None:
    assert NO_RULES.as_json() == {}
    assert ValueRules(min_date=date(2024, 1, 1), max_count=3).as_json() == {"min_date": "2024-01-01", "max_count": 3}
    assert ValueRules(min=0, max=2.5).as_json() == {"min": 0, "max": 2.5}  # 0 is a rule, not unset
    assert ValueRules(min_length=0, regex="x").as_json() == {"min_length": 0, "regex": "x"}


@pytest.mark.parametrize("case", VALID_RULES, ids=[_rules_id(c) for c in VALID_RULES])
def test_rules_round_trip_through_storage(case: tuple[ValueType, bool, Any, ValueRules]) -> None:
    value_type, is_multi, raw, parsed = case
    stored = parse_rules(value_type, is_multi, raw).as_json()
    assert json.loads(json.dumps(stored)) == stored  # plain JSON
    assert rules_from_storage(stored) == parsed
    assert parse_rules(value_type, is_multi, stored) == parsed  # and could be set again as is


@pytest.mark.parametrize("raw", [None, {}])
def test_nothing_stored_is_no_rules(raw: Any) -> None:
    assert rules_from_storage(raw) is NO_RULES


def test_storage_ignores_names_that_are_not_rules() -> None:
    assert rules_from_storage({"min": 1, "legacy": True}) == ValueRules(min=1)
    assert rules_from_storage({"min_date": "2024-03-01"}).min_date == date(2024, 3, 1)
