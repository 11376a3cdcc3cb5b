"""Validation rules a field's owner adds on top of its type: ranges, lengths, a pattern, a date window, a count.

Rules are checked when they are set (:func:`parse_rules`: each rule must suit the field's type and be
consistent) and on every write (:func:`check_rules`, on the canonical value).

=================== =========================================== ===============================
rule                applies to                                  meaning
=================== =========================================== ===============================
``min``, ``max``    number, currency (the amount)               inclusive bounds
``min_length``,     string, url, email, file                    length in characters, inclusive
``max_length``
``regex``           string, url, email, file                    the whole value must match
``min_date``,       date, datetime                              ``YYYY-MM-DD``, inclusive, on the
``max_date``                                                    value's calendar date
``max_count``       multi-valued fields (multi, multi relation) at most this many items
=================== =========================================== ===============================
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import regex

from cfv.domain.fields import ValueType
from cfv.domain.patterns import CostlyPattern, compile_pattern

JSON = Any
#: A pattern gets this long to match one value; a pathological one fails the write instead of the worker.
PATTERN_TIMEOUT_SECONDS = 0.05

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_NUMERIC = frozenset({ValueType.NUMBER, ValueType.CURRENCY})
_TEXTUAL = frozenset({ValueType.STRING, ValueType.URL, ValueType.EMAIL, ValueType.FILE})
_DATED = frozenset({ValueType.DATE, ValueType.DATETIME})


class InvalidRules(ValueError):
    """Rules that cannot be set on a field; ``problems`` maps each rule to what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{rule}: {problem}" for rule, problem in problems.items()))
        self.problems = dict(problems)


class RuleViolation(ValueError):
    """A value that breaks one of its field's rules; the message is meant for the client."""


@dataclass(frozen=True, slots=True)
class ValueRules:
    """The rules of one field, parsed; ``None`` means no such rule."""

    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    min_date: date | None = None
    max_date: date | None = None
    max_count: int | None = None

    def as_json(self) -> dict[str, JSON]:
        """The rules that are set, in their stored JSON form."""
        out: dict[str, JSON] = {}
        for name in _ALL_RULES:
            rule = getattr(self, name)
            if rule is not None:
                out[name] = rule.isoformat() if isinstance(rule, date) else rule
        return out


NO_RULES = ValueRules()
_ALL_RULES = ("min", "max", "min_length", "max_length", "regex", "min_date", "max_date", "max_count")


def applicable_rules(value_type: ValueType, is_multi: bool) -> tuple[str, ...]:
    """The rule names a field of this type may carry."""
    names: list[str] = []
    if value_type in _NUMERIC:
        names += ["min", "max"]
    if value_type in _TEXTUAL:
        names += ["min_length", "max_length", "regex"]
    if value_type in _DATED:
        names += ["min_date", "max_date"]
    if is_multi:
        names.append("max_count")
    return tuple(names)


def parse_rules(value_type: ValueType, is_multi: bool, raw: JSON) -> ValueRules:
    """Parse the rules a client set on a field, or raise :class:`InvalidRules` naming every problem."""
    if raw is None:
        return NO_RULES
    if not isinstance(raw, Mapping):
        raise InvalidRules({"validation_rules": "must be an object"})
    allowed = applicable_rules(value_type, is_multi)
    problems: dict[str, str] = {}
    parsed: dict[str, JSON] = {}
    for name, value in raw.items():
        if name not in allowed:
            problems[name] = (f"not a rule of a {value_type} field" + (f"; its rules are {', '.join(allowed)}"
                                                                     if allowed else "; it has none"))
            continue
        try:
            parsed[name] = _PARSERS[name](value)
        except ValueError as error:
            problems[name] = str(error)
    for low, high in (("min", "max"), ("min_length", "max_length"), ("min_date", "max_date")):
        if parsed.get(low) is not None and parsed.get(high) is not None and parsed[low] > parsed[high]:
            problems[low] = f"must not be greater than {high}"
    if problems:
        raise InvalidRules(problems)
    return ValueRules(**parsed)


def rules_from_storage(raw: JSON) -> ValueRules:
    """Rules as stored (already checked by :func:`parse_rules` when set); a pattern is compiled when first
    matched, not here."""
    if not raw:
        return NO_RULES
    return ValueRules(**{name: _STORED[name](value) for name, value in raw.items() if name in _STORED})


def check_rules(rules: ValueRules, value_type: ValueType, value: JSON) -> None:
    """Raise :class:`RuleViolation` if a canonical ``value`` breaks one of ``rules``."""
    if rules is NO_RULES:
        return
    if rules.max_count is not None and isinstance(value, list) and value_type not in _NUMERIC \
            and len(value) > rules.max_count:
        raise RuleViolation(f"must list at most {rules.max_count} items")
    if value_type in _NUMERIC:
        amount = value[0] if value_type is ValueType.CURRENCY else value
        if rules.min is not None and amount < rules.min:
            raise RuleViolation(f"must be at least {_number_text(rules.min)}")
        if rules.max is not None and amount > rules.max:
            raise RuleViolation(f"must be at most {_number_text(rules.max)}")
    elif value_type in _TEXTUAL:
        if rules.min_length is not None and len(value) < rules.min_length:
            raise RuleViolation(f"must be at least {rules.min_length} characters long")
        if rules.max_length is not None and len(value) > rules.max_length:
            raise RuleViolation(f"must be at most {rules.max_length} characters long")
        if rules.regex is not None and not _matches(rules.regex, value):
            raise RuleViolation(f"must match the pattern {rules.regex}")
    elif value_type in _DATED:
        day = date.fromisoformat(value[:10])
        if rules.min_date is not None and day < rules.min_date:
            raise RuleViolation(f"must be on or after {rules.min_date.isoformat()}")
        if rules.max_date is not None and day > rules.max_date:
            raise RuleViolation(f"must be on or before {rules.max_date.isoformat()}")


def _matches(pattern: str, value: str) -> bool:
    try:
        compiled = compile_pattern(pattern)
    except (CostlyPattern, regex.error) as error:
        # only a pattern stored before patterns were priced gets here
        raise RuleViolation(f"cannot be checked: the field's pattern {error}; the field must be changed") from None
    try:
        return compiled.fullmatch(value, timeout=PATTERN_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        raise RuleViolation(f"could not be checked against the pattern {pattern} in time") from None


def _number(value: JSON) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _count(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


def _positive_count(value: JSON) -> int:
    if _count(value) == 0:
        raise ValueError("must be a whole number, 1 or more")
    return int(value)


def _pattern(value: JSON) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a regular expression")
    try:
        compile_pattern(value)
    except regex.error as error:
        raise ValueError(f"is not a valid regular expression: {error}") from None
    return value


def _day(value: JSON) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date as YYYY-MM-DD") from None


def _number_text(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_PARSERS: dict[str, Callable[[JSON], Any]] = {
    "min": _number, "max": _number, "min_length": _count, "max_length": _count, "regex": _pattern,
    "min_date": _day, "max_date": _day, "max_count": _positive_count,
}
_STORED: dict[str, Callable[[JSON], Any]] = {**_PARSERS, "regex": str}
