"""Value validation: every value type's canonical form, what it refuses, and subject ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cfv.domain.fields import (
    INTEGER_ID_SUBJECTS,
    FieldDefinition,
    RelationTarget,
    SubjectType,
    ValueType,
)
from cfv.domain.values import (
    MAX_ITEMS,
    MAX_STRING_LENGTH,
    InvalidValue,
    canonical_subject_id,
    render_subject_id,
    validate_value,
)

CHOICES = frozenset({1, 2, 3, 40})
UUID_LOWER = "12345678-9abc-4def-8123-456789abcdef"
UUID_UPPER = UUID_LOWER.upper()
UUID_BARE = UUID_LOWER.replace("-", "")
UUID_OTHER = "00000000-0000-4000-8000-000000000001"


def field(
    value_type: ValueType,
    *,
    choice_ids: frozenset[int] = CHOICES,
    relation_target: RelationTarget | None = None,
    relation_multi: bool = False,
) -> FieldDefinition:
    return FieldDefinition(
        id=7,
        workspace_id=1,
        name="Field",
        subject_type=SubjectType.STORY,
        value_type=value_type,
        choice_ids=choice_ids if value_type in (ValueType.SINGLE, ValueType.MULTI) else frozenset(),
        relation_target=relation_target,
        relation_multi=relation_multi,
    )


USER_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.USER)
USER_MULTI = field(ValueType.RELATION, relation_target=RelationTarget.USER, relation_multi=True)
WORK_ITEM_SINGLE = field(ValueType.RELATION, relation_target=RelationTarget.WORK_ITEM)
WORK_ITEM_MULTI = field(ValueType.RELATION, relation_target=RelationTarget.WORK_ITEM, relation_multi=True)


def definition_for(value_type: ValueType) -> FieldDefinition:
    return USER_SINGLE if value_type is ValueType.RELATION else field(value_type)


# (definition, raw, canonical)
VALID: list[tuple[FieldDefinition, Any, Any]] = [
    # string
    (field(ValueType.STRING), "hello", "hello"),
    (field(ValueType.STRING), "", ""),
    (field(ValueType.STRING), "  spaced  ", "  spaced  "),
    (field(ValueType.STRING), "héllo wörld ✓", "héllo wörld ✓"),
    (field(ValueType.STRING), "x" * MAX_STRING_LENGTH, "x" * MAX_STRING_LENGTH),
    # url
    (field(ValueType.URL), "http://example.com", "http://example.com"),
    (field(ValueType.URL), "https://example.com", "https://example.com"),
    (field(ValueType.URL), "https://example.com/a/b?q=1&r=2#frag", "https://example.com/a/b?q=1&r=2#frag"),
    (field(ValueType.URL), "https://example.com:8443/x", "https://example.com:8443/x"),
    (field(ValueType.URL), "HTTPS://EXAMPLE.COM/Path", "HTTPS://EXAMPLE.COM/Path"),
    # email: the domain is lowercased, the local part kept as given
    (field(ValueType.EMAIL), "alice@example.com", "alice@example.com"),
    (field(ValueType.EMAIL), "Alice@EXAMPLE.COM", "Alice@example.com"),
    (field(ValueType.EMAIL), "bob.smith+tag@Mail.Example.ORG", "bob.smith+tag@mail.example.org"),
    # file
    (field(ValueType.FILE), "report.pdf", "report.pdf"),
    (field(ValueType.FILE), " report final.pdf ", " report final.pdf "),
    # date
    (field(ValueType.DATE), "2014-02-25", "2014-02-25"),
    (field(ValueType.DATE), "2016-02-29", "2016-02-29"),
    (field(ValueType.DATE), "0001-01-01", "0001-01-01"),
    (field(ValueType.DATE), "9999-12-31", "9999-12-31"),
    # datetime (Python 3.11 fromisoformat: Z, offsets, naive, space separator, fractions)
    (field(ValueType.DATETIME), "2014-02-25T10:00:00Z", "2014-02-25T10:00:00+00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00+02:00", "2014-02-25T10:00:00+02:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00-05:30", "2014-02-25T10:00:00-05:30"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00", "2014-02-25T10:00:00"),
    (field(ValueType.DATETIME), "2014-02-25 10:00", "2014-02-25T10:00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00.5Z", "2014-02-25T10:00:00.500000+00:00"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00.123456+00:00", "2014-02-25T10:00:00.123456+00:00"),
    # number
    (field(ValueType.NUMBER), 13, 13),
    (field(ValueType.NUMBER), 0, 0),
    (field(ValueType.NUMBER), -5, -5),
    (field(ValueType.NUMBER), 13.5, 13.5),
    (field(ValueType.NUMBER), -0.25, -0.25),
    (field(ValueType.NUMBER), 1e300, 1e300),
    (field(ValueType.NUMBER), 2**63, 2**63),
    # currency
    (field(ValueType.CURRENCY), [998, "USD"], [998, "USD"]),
    (field(ValueType.CURRENCY), [13.5, "EUR"], [13.5, "EUR"]),
    (field(ValueType.CURRENCY), [0, "JPY"], [0, "JPY"]),
    (field(ValueType.CURRENCY), [-20, "GBP"], [-20, "GBP"]),
    # boolean
    (field(ValueType.BOOLEAN), True, True),
    (field(ValueType.BOOLEAN), False, False),
    # single
    (field(ValueType.SINGLE), [2], [2]),
    (field(ValueType.SINGLE), 2, [2]),
    (field(ValueType.SINGLE), [40], [40]),
    # multi: replace-set, first-seen order, duplicates collapsed
    (field(ValueType.MULTI), [3, 1, 3, 2, 1], [3, 1, 2]),
    (field(ValueType.MULTI), [40, 1], [40, 1]),
    (field(ValueType.MULTI), [2], [2]),
    (field(ValueType.MULTI), 2, [2]),
    (field(ValueType.MULTI, choice_ids=frozenset(range(1, 201))), list(range(1, 101)), list(range(1, 101))),
    # relation to users
    (USER_SINGLE, 7, [7]),
    (USER_SINGLE, [7], [7]),
    (USER_MULTI, [7, 8, 7, 9, 8], [7, 8, 9]),
    (USER_MULTI, 7, [7]),
    (USER_MULTI, list(range(1, 101)), list(range(1, 101))),
    # relation to work items: UUIDs canonicalised to lowercase hyphenated
    (WORK_ITEM_SINGLE, UUID_LOWER, [UUID_LOWER]),
    (WORK_ITEM_SINGLE, [UUID_UPPER], [UUID_LOWER]),
    (WORK_ITEM_SINGLE, [UUID_BARE], [UUID_LOWER]),
    (WORK_ITEM_SINGLE, ["{" + UUID_UPPER + "}"], [UUID_LOWER]),
    (WORK_ITEM_MULTI, [UUID_UPPER, UUID_OTHER, UUID_LOWER, UUID_BARE], [UUID_LOWER, UUID_OTHER]),
]


# (definition, raw, part of the message)
INVALID: list[tuple[FieldDefinition, Any, str]] = [
    # string
    (field(ValueType.STRING), 5, "must be a string"),
    (field(ValueType.STRING), True, "must be a string"),
    (field(ValueType.STRING), ["a"], "must be a string"),
    (field(ValueType.STRING), {"text": "a"}, "must be a string"),
    (field(ValueType.STRING), "x" * (MAX_STRING_LENGTH + 1), "at most 10000 characters"),
    (field(ValueType.STRING), "a\x00b", "NUL"),
    (field(ValueType.FILE), "report\x00.pdf", "NUL"),
    # url
    (field(ValueType.URL), "ftp://example.com/file", "http or https URL"),
    (field(ValueType.URL), "example.com", "http or https URL"),
    (field(ValueType.URL), "//example.com", "http or https URL"),
    (field(ValueType.URL), "mailto:alice@example.com", "http or https URL"),
    (field(ValueType.URL), "http://", "http or https URL"),
    (field(ValueType.URL), "http://exa mple.com", "http or https URL"),
    (field(ValueType.URL), "http://example.com/a b", "http or https URL"),
    (field(ValueType.URL), " http://example.com", "http or https URL"),
    (field(ValueType.URL), "http://example.com\tx", "http or https URL"),
    (field(ValueType.URL), "", "http or https URL"),
    (field(ValueType.URL), 5, "must be a string"),
    (field(ValueType.URL), "https://example.com/" + "a" * MAX_STRING_LENGTH, "at most 10000 characters"),
    # email
    (field(ValueType.EMAIL), "nope", "must be an email address"),
    (field(ValueType.EMAIL), "a@b", "must be an email address"),
    (field(ValueType.EMAIL), "a@@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "a b@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "@example.com", "must be an email address"),
    (field(ValueType.EMAIL), "", "must be an email address"),
    (field(ValueType.EMAIL), 5, "must be a string"),
    # file
    (field(ValueType.FILE), "", "must name a file"),
    (field(ValueType.FILE), "   ", "must name a file"),
    (field(ValueType.FILE), "\t\n", "must name a file"),
    (field(ValueType.FILE), 5, "must be a string"),
    (field(ValueType.FILE), "f" * (MAX_STRING_LENGTH + 1), "at most 10000 characters"),
    # date
    (field(ValueType.DATE), "2014-02-30", "real calendar date"),
    (field(ValueType.DATE), "2015-02-29", "real calendar date"),
    (field(ValueType.DATE), "2014-13-01", "real calendar date"),
    (field(ValueType.DATE), "2014-00-10", "real calendar date"),
    (field(ValueType.DATE), "2014-2-5", "YYYY-MM-DD"),
    (field(ValueType.DATE), "2014-02-25T10:00:00", "YYYY-MM-DD"),
    (field(ValueType.DATE), "2014-02-25T10:00:00Z", "YYYY-MM-DD"),
    (field(ValueType.DATE), "20140225", "YYYY-MM-DD"),
    (field(ValueType.DATE), "25/02/2014", "YYYY-MM-DD"),
    (field(ValueType.DATE), " 2014-02-25", "YYYY-MM-DD"),
    (field(ValueType.DATE), "", "YYYY-MM-DD"),
    (field(ValueType.DATE), 20140225, "YYYY-MM-DD"),
    (field(ValueType.DATE), ["2014-02-25"], "YYYY-MM-DD"),
    # Refused (the message is the less apt "real calendar date" for these two).
    (field(ValueType.DATE), "2014-02-25\n", "date"),
    (field(ValueType.DATE), "\u0662\u0660\u0661\u0664-\u0660\u0662-\u0662\u0665", "date"),
    # datetime
    (field(ValueType.DATETIME), "garbage", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25Tnoon", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T25:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T10:61:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-30T10:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-2-5T10:00:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "2014-02-25T10:00:00+25:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), "25/02/2014 10:00", "ISO 8601 date and time"),
    (field(ValueType.DATETIME), 1393322400, "ISO 8601 date and time"),
    (field(ValueType.DATETIME), True, "ISO 8601 date and time"),
    # number
    (field(ValueType.NUMBER), True, "must be a number"),
    (field(ValueType.NUMBER), False, "must be a number"),
    (field(ValueType.NUMBER), "13", "must be a number"),
    (field(ValueType.NUMBER), [13], "must be a number"),
    (field(ValueType.NUMBER), {"n": 13}, "must be a number"),
    (field(ValueType.NUMBER), float("nan"), "finite"),
    (field(ValueType.NUMBER), float("inf"), "finite"),
    (field(ValueType.NUMBER), float("-inf"), "finite"),
    # currency
    (field(ValueType.CURRENCY), ["998", "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [True, "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [float("nan"), "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [float("inf"), "USD"], "amount must be a number"),
    (field(ValueType.CURRENCY), [998, "XXX1"], "'XXX1' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, "usd"], "'usd' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, "ABC"], "'ABC' is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, ""], "is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, 840], "840 is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), [998, None], "None is not an ISO 4217 currency code"),
    (field(ValueType.CURRENCY), ["USD", 998], "amount must be a number"),
    (field(ValueType.CURRENCY), [998], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), [998, "USD", "EUR"], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), [], '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), 998, '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), "998 USD", '[amount, "currency code"]'),
    (field(ValueType.CURRENCY), {"amount": 998, "currency": "USD"}, '[amount, "currency code"]'),
    # boolean
    (field(ValueType.BOOLEAN), 0, "true or false"),
    (field(ValueType.BOOLEAN), 1, "true or false"),
    (field(ValueType.BOOLEAN), "true", "true or false"),
    (field(ValueType.BOOLEAN), "false", "true or false"),
    (field(ValueType.BOOLEAN), [True], "true or false"),
    # single
    (field(ValueType.SINGLE), [1, 2], "exactly one choice"),
    (field(ValueType.SINGLE), [9], "not a choice of this field: 9"),
    (field(ValueType.SINGLE), 9, "not a choice of this field: 9"),
    (field(ValueType.SINGLE), [], "at least one choice"),
    (field(ValueType.SINGLE), True, "integer ids"),
    (field(ValueType.SINGLE), [True], "integer ids"),
    (field(ValueType.SINGLE), ["2"], "integer ids"),
    (field(ValueType.SINGLE), [2.0], "integer ids"),
    (field(ValueType.SINGLE), [None], "integer ids"),
    (field(ValueType.SINGLE), "2", "integer ids"),
    # multi
    (field(ValueType.MULTI), [], "at least one choice"),
    (field(ValueType.MULTI), [1, 9], "not a choice of this field: 9"),
    (field(ValueType.MULTI), [8, 1, 9], "not a choice of this field: 8, 9"),
    (field(ValueType.MULTI), [1, True], "integer ids"),
    (field(ValueType.MULTI), [1, "2"], "integer ids"),
    (field(ValueType.MULTI, choice_ids=frozenset(range(1, 201))), list(range(1, 102)), "at most 100 choices"),
    # relation to users
    (USER_SINGLE, [7, 8], "exactly one target"),
    (USER_SINGLE, [], "at least one user"),
    (USER_SINGLE, 0, "positive integer ids"),
    (USER_SINGLE, -1, "positive integer ids"),
    (USER_SINGLE, True, "positive integer ids"),
    (USER_SINGLE, "7", "positive integer ids"),
    (USER_SINGLE, 7.0, "positive integer ids"),
    (USER_SINGLE, UUID_LOWER, "positive integer ids"),
    (USER_MULTI, [], "at least one user"),
    (USER_MULTI, [7, 0], "positive integer ids"),
    (USER_MULTI, [7, False], "positive integer ids"),
    (USER_MULTI, list(range(1, 102)), "at most 100 users"),
    # relation to work items
    (WORK_ITEM_SINGLE, "not-a-uuid", "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, 7, "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, [7], "work items are given by their UUIDs"),
    (WORK_ITEM_SINGLE, [UUID_LOWER, UUID_OTHER], "exactly one target"),
    (WORK_ITEM_SINGLE, [], "at least one work item"),
    (WORK_ITEM_MULTI, [UUID_LOWER, "nope"], "work items are given by their UUIDs"),
    (WORK_ITEM_MULTI, [], "at least one work item"),
]


def _case_id(case: tuple[FieldDefinition, Any, Any]) -> str:
    definition, raw, _ = case
    kind = str(definition.value_type)
    if definition.relation_target is not None:
        kind += f"-{definition.relation_target}-{'multi' if definition.relation_multi else 'single'}"
    text = repr(raw)
    return f"{kind}:{text if len(text) <= 40 else text[:37] + '...'}"


@pytest.mark.parametrize("case", VALID, ids=[_case_id(c) for c in VALID])
def test_valid_value_has_its_canonical_form(case: tuple[FieldDefinition, Any, Any]) -> None:
    definition, raw, canonical = case
    result = validate_value(definition, raw)
    assert result == canonical
    assert type(result) is type(canonical)
    if isinstance(canonical, list):
        assert [type(item) for item in result] == [type(item) for item in canonical]


@pytest.mark.parametrize("case", INVALID, ids=[_case_id(c) for c in INVALID])
def test_invalid_value_is_refused(case: tuple[FieldDefinition, Any, str]) -> None:
    definition, raw, message = case
    with pytest.raises(InvalidValue, match=re.escape(message)):
        validate_value(definition, raw)


def test_every_value_type_has_valid_and_invalid_cases() -> None:
    assert {d.value_type for d, _, _ in VALID} == set(ValueType)
    assert {d.value_type for d, _, _ in INVALID} == set(ValueType)


@pytest.mark.parametrize("definition", [
    *(definition_for(t) for t in ValueType if t is not ValueType.RELATION),
    USER_SINGLE, USER_MULTI, WORK_ITEM_SINGLE, WORK_ITEM_MULTI,
], ids=lambda d: f"{d.value_type}-{d.relation_target}-{d.relation_multi}")
def test_none_is_refused_for_every_type(definition: FieldDefinition) -> None:
    with pytest.raises(InvalidValue, match="a value is required; delete the value to clear it"):
        validate_value(definition, None)


def test_url_with_trailing_newline_is_refused() -> None:
    # Whitespace is refused everywhere else in a URL; a trailing newline must be too, not stored as given.
    with pytest.raises(InvalidValue, match="http or https URL"):
        validate_value(field(ValueType.URL), "https://example.com/path\n")


def test_string_length_limit_is_exact() -> None:
    assert validate_value(field(ValueType.STRING), "é" * MAX_STRING_LENGTH) == "é" * MAX_STRING_LENGTH
    with pytest.raises(InvalidValue):
        validate_value(field(ValueType.STRING), "é" * (MAX_STRING_LENGTH + 1))


def test_multi_is_a_fresh_list_not_the_input() -> None:
    raw = [1, 2]
    result = validate_value(field(ValueType.MULTI), raw)
    assert result == [1, 2]
    assert result is not raw


def test_multi_limit_counts_items_as_sent() -> None:
    # Exactly MAX_ITEMS items is fine; the limit applies to the list sent.
    assert validate_value(field(ValueType.MULTI), [1] * MAX_ITEMS) == [1]


def test_single_unknown_choice_names_only_the_unknown_id() -> None:
    with pytest.raises(InvalidValue) as raised:
        validate_value(field(ValueType.SINGLE), [12345])
    assert str(raised.value) == "not a choice of this field: 12345"


def test_choice_field_with_no_choices_refuses_everything() -> None:
    with pytest.raises(InvalidValue, match="not a choice of this field: 1"):
        validate_value(field(ValueType.MULTI, choice_ids=frozenset()), [1])


# canonical_subject_id / render_subject_id

INTEGER_SUBJECTS = sorted(INTEGER_ID_SUBJECTS)


def test_only_work_items_are_identified_by_uuid() -> None:
    assert set(SubjectType) - INTEGER_ID_SUBJECTS == {SubjectType.WORK_ITEM}


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize(("raw", "canonical"), [
    (42, "42"),
    ("42", "42"),
    (1, "1"),
    ("1", "1"),
    ("007", "7"),
    (2**63 - 1, str(2**63 - 1)),
    (str(2**63 - 1), str(2**63 - 1)),
])
def test_integer_subject_id_is_canonical_text(subject_type: SubjectType, raw: Any, canonical: str) -> None:
    assert canonical_subject_id(subject_type, raw) == canonical


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize("raw", [
    0, -1, "0", "-1", "+1", True, False, "abc", "", " 42", "42 ", "4.0", 4.0, 2**63, str(2**63), None,
    [42], "\u0664\u0662",  # Arabic-Indic digits: isdigit() but not ASCII
    UUID_LOWER,
], ids=repr)
def test_bad_integer_subject_id_is_refused(subject_type: SubjectType, raw: Any) -> None:
    with pytest.raises(InvalidValue, match=f"^{subject_type} ids are positive integers$"):
        canonical_subject_id(subject_type, raw)


@pytest.mark.parametrize("digits", [4300, 4301, 10_000])
def test_overlong_digit_string_subject_id_is_refused_as_invalid(digits: int) -> None:
    # A digit string long enough to trip Python's int-from-str limit must still be an InvalidValue
    # (a client error), not a bare ValueError that escapes validation.
    with pytest.raises(InvalidValue, match="Story ids are positive integers"):
        canonical_subject_id(SubjectType.STORY, "9" * digits)


@pytest.mark.parametrize(("raw", "canonical"), [
    (UUID_LOWER, UUID_LOWER),
    (UUID_UPPER, UUID_LOWER),
    (UUID_BARE, UUID_LOWER),
    ("urn:uuid:" + UUID_LOWER, UUID_LOWER),
])
def test_work_item_subject_id_is_canonical_uuid(raw: str, canonical: str) -> None:
    assert canonical_subject_id(SubjectType.WORK_ITEM, raw) == canonical


@pytest.mark.parametrize("raw", [42, "42", 0, True, None, "not-a-uuid", UUID_LOWER + "0", [UUID_LOWER]], ids=repr)
def test_bad_work_item_subject_id_is_refused(raw: Any) -> None:
    with pytest.raises(InvalidValue, match=r"^WorkItem ids are UUIDs$"):
        canonical_subject_id(SubjectType.WORK_ITEM, raw)


@pytest.mark.parametrize("subject_type", INTEGER_SUBJECTS)
@pytest.mark.parametrize("raw", [42, "42", "0042", 2**63 - 1])
def test_integer_subject_id_round_trips_to_int(subject_type: SubjectType, raw: Any) -> None:
    stored = canonical_subject_id(subject_type, raw)
    rendered = render_subject_id(subject_type, stored)
    assert type(rendered) is int
    assert rendered == int(raw)
    assert canonical_subject_id(subject_type, rendered) == stored


@pytest.mark.parametrize("raw", [UUID_LOWER, UUID_UPPER, UUID_BARE])
def test_work_item_subject_id_round_trips_to_string(raw: str) -> None:
    stored = canonical_subject_id(SubjectType.WORK_ITEM, raw)
    rendered = render_subject_id(SubjectType.WORK_ITEM, stored)
    assert rendered == UUID_LOWER
    assert type(rendered) is str
    assert canonical_subject_id(SubjectType.WORK_ITEM, rendered) == stored
