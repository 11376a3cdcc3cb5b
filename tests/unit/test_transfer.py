"""Reading, checking and batching a values CSV (``cfv import values``), and writing one (``cfv export values``):
the pure part of :mod:`cfv.transfer`, without I/O."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from cfv.domain.changes import KeyState, StoredValue
from cfv.domain.fields import FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.writes import ValueKey
from cfv.store.transfer import StoredValue as ExportedValue
from cfv.transfer import (
    Answer,
    FileError,
    Problem,
    Sent,
    check_rows,
    check_users,
    classify,
    export_header,
    export_row,
    parse_cell,
    plan_batches,
    progress_wanted,
    read_csv,
    refusal,
    render_value,
    retry_delay,
    summary,
    users_to_look_up,
)

WS = 3
POINTS = FieldDefinition(1, WS, "Points", SubjectType.STORY, ValueType.NUMBER)
NOTE = FieldDefinition(2, WS, "Note", SubjectType.STORY, ValueType.STRING)
BUDGET = FieldDefinition(3, WS, "Budget", SubjectType.STORY, ValueType.CURRENCY)
DUE = FieldDefinition(4, WS, "Due", SubjectType.STORY, ValueType.DATE)
DONE = FieldDefinition(5, WS, "Done", SubjectType.STORY, ValueType.BOOLEAN)
COLOUR = FieldDefinition(6, WS, "Colour", SubjectType.STORY, ValueType.MULTI, choice_ids=frozenset({10, 11}))
NOTE_OF_USERS = FieldDefinition(7, WS, "Note", SubjectType.USER, ValueType.STRING)
TWIN_A = FieldDefinition(8, WS, "Twin", SubjectType.STORY, ValueType.STRING)
TWIN_B = FieldDefinition(9, WS, "Twin", SubjectType.STORY, ValueType.NUMBER)
OWNER = FieldDefinition(12, WS, "Owner", SubjectType.STORY, ValueType.RELATION, relation_target=RelationTarget.USER)
TICKET = FieldDefinition(13, WS, "Ticket", SubjectType.WORK_ITEM, ValueType.STRING)
DEFINITIONS = {d.id: d for d in (POINTS, NOTE, BUDGET, DUE, DONE, COLOUR, NOTE_OF_USERS, TWIN_A, TWIN_B, OWNER,
                                 TICKET)}
WORK_ITEM = "12345678-9abc-4def-8123-456789abcdef"
HEADER = "subject_type,subject_id,custom_field_id,value\n"


def check(text: str) -> Any:
    return check_rows(WS, read_csv(text), DEFINITIONS)


def lines_of(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


# --- cells ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "value"), [
    ("12", 12), ("13.5", 13.5), ("-1", -1), ('[998,"USD"]', [998, "USD"]), ("true", True), ("false", False),
    ("[1, 2]", [1, 2]), ('"007"', "007"), ('"true"', "true"), ("null", None), ('{"add": [1]}', {"add": [1]}),
    ("hello", "hello"), ("2024-01-31", "2024-01-31"), ("", ""), ("007", "007"), ("NaN", "NaN"), ("[1,", "[1,"),
    ("hello world", "hello world"), ("2024-01-31T10:00:00+00:00", "2024-01-31T10:00:00+00:00"),
])
def test_a_cell_is_json_when_it_parses_as_json_else_its_text(cell: str, value: Any) -> None:
    assert parse_cell(cell) == value


@pytest.mark.parametrize("value", [
    "hello", "", " padded ", "12", "true", "null", '"quoted"', "[1, 2]", "007", "line\nbreak", "ünïcode", 12, 13.5,
    -0.25, [998, "USD"], True, False, [1, 2, 3], ["a", "b"], "2024-01-31", {"add": [1], "remove": []},
])
def test_a_rendered_value_reads_back_the_same(value: Any) -> None:
    assert parse_cell(render_value(value)) == value


def test_plain_strings_are_written_as_they_are_and_the_rest_as_json() -> None:
    assert render_value("hello") == "hello"
    assert render_value("2024-01-31") == "2024-01-31"
    assert render_value("12") == '"12"'
    assert render_value([998, "USD"]) == '[998,"USD"]'
    assert render_value(True) == "true"


# --- reading a file ------------------------------------------------------------------------------------------


def test_rows_and_their_lines() -> None:
    table = read_csv(HEADER + 'Story,7,1,12\r\n\nStory, 8 ,2,"two\nlines"\nStory,9,2,after\n')
    assert not table.by_name and not table.problems
    assert [(r.line, r.subject_type, r.subject_id, r.field, r.value) for r in table.rows] == [
        (2, "Story", "7", "1", "12"), (4, "Story", "8", "2", "two\nlines"), (6, "Story", "9", "2", "after")]


def test_columns_in_any_order_and_any_case() -> None:
    table = read_csv(" Value ,CUSTOM_FIELD_ID,subject_id,subject_type\n5,1,7,Story\n")
    [row] = table.rows
    assert (row.subject_type, row.subject_id, row.field, row.value) == ("Story", "7", "1", "5")


def test_a_field_by_name() -> None:
    table = read_csv("subject_type,subject_id,custom_field,value\nStory,7, Points ,5\n")
    assert table.by_name and table.field_column == "custom_field"
    assert table.rows[0].field == " Points "  # names are taken as written


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("Story,7,1,5\n", "unknown column(s) 'Story', '7', '1', '5': the first line must be the header"),
    ("subject_type,subject_id,value\n", "the header lacks column(s) custom_field_id"),
    ("subject_type,subject_id,custom_field_id,custom_field,value\n", "give custom_field_id or custom_field, not both"),
    ("subject_type,subject_id,custom_field_id,value,value\n", "the header names column value twice"),
    ("subject_type,subject_id,custom_field_id,value,colour\n", "unknown column(s) 'colour'"),
])
def test_a_file_that_cannot_be_read(text: str, message: str) -> None:
    with pytest.raises(FileError) as raised:
        read_csv(text)
    assert message in str(raised.value)


def test_rows_that_do_not_fit_the_header() -> None:
    table = read_csv(HEADER + "Story,7,1\nStory,7,1,5,extra\nStory,8,1,5\n")
    assert lines_of(table.problems) == [
        "line 2, column value: missing: the row has 3 cells, the header 4",
        "line 3, column 5: one cell too many: the row has 5 cells, the header 4"]
    assert [r.line for r in table.rows] == [4]


# --- checking rows -------------------------------------------------------------------------------------------


def test_valid_rows_become_the_items_to_send() -> None:
    checked = check(HEADER + "\n".join([
        "Story,7,1,12", "Story,7,2,hello", 'Story,7,3,"[998,""USD""]"', "Story,7,4,2024-01-31", "Story,7,5,true",
        'Story,7,6,"[10,11]"', f"WorkItem,{WORK_ITEM.upper()},13,T-1"]) + "\n")
    assert not checked.problems and checked.rows == 7
    assert [item.body for item in checked.items] == [
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 1, "value": 12},
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 2, "value": "hello"},
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 3, "value": [998, "USD"]},
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 4, "value": "2024-01-31"},
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 5, "value": True},
        {"subject_type": "Story", "subject_id": 7, "custom_field_id": 6, "value": [10, 11]},
        {"subject_type": "WorkItem", "subject_id": WORK_ITEM, "custom_field_id": 13, "value": "T-1"},
    ]
    assert [item.line for item in checked.items] == [2, 3, 4, 5, 6, 7, 8]


def test_every_bad_row_is_reported_at_its_line_and_column() -> None:
    checked = check(HEADER + "\n".join([
        "Story,7,1,12",          # 2: fine
        "Story,7,999,12",        # 3: no such field
        "Story,7,x1,12",         # 4: not a field id
        "Story,7,1,twelve",      # 5: not a number
        "Story,-3,1,12",         # 6: bad subject id
        "Story,abc,1,12",        # 7: bad subject id
        "Epic,7,1,12",           # 8: no such subject type
        "User,7,1,12",           # 9: the field applies to Stories
        "Story,7,4,2024-02-30",  # 10: no such date
        "Story,7,6,[12]",        # 11: not a choice
        'Story,7,3,"[998,""ZZZ""]"',  # 12: no such currency
        "Story,7",               # 13: too short
        "Story,8,2,12",          # 14: a number where text is wanted
    ]) + "\n")
    assert [item.line for item in checked.items] == [2]
    assert lines_of(checked.problems) == [
        "line 3, column custom_field_id: custom field 999 not found",
        "line 4, column custom_field_id: 'x1' is not a custom field id (a positive integer)",
        "line 5, column value: Points: must be a number",
        "line 6, column subject_id: Story ids are positive integers",
        "line 7, column subject_id: Story ids are positive integers",
        "line 8, column subject_type: subject_type must be one of Estimate, Story, User, Workspace, WorkspaceGroup, "
        "Resource, WorkItem",
        "line 9, column subject_type: custom field 1 applies to Story, not User",
        "line 10, column value: Due: must be a real calendar date",
        "line 11, column value: Colour: not a choice of this field: 12",
        "line 12, column value: Budget: 'ZZZ' is not an ISO 4217 currency code",
        "line 13, column custom_field_id: missing: the row has 2 cells, the header 4",
        'line 14, column value: Note: must be a string (the cell reads as JSON; for the text, write it as a JSON '
        'string: "12")',
    ]
    assert checked.rows == 13


def test_fields_by_name() -> None:
    checked = check_rows(WS, read_csv("subject_type,subject_id,custom_field,value\n" + "\n".join([
        "Story,7,Points,3",      # 2: one field of that name
        "Story,7,Note,hi",       # 3: two fields named Note, one of Stories
        "User,7,Note,hi",        # 4: the other
        "Story,7,Nope,1",        # 5: no such name
        "Story,7,Twin,1",        # 6: two of Stories
        "User,7,Points,1",       # 7: the one Points is for Stories
        "Estimate,7,Note,1",     # 8: no Note of Estimates
    ]) + "\n"), DEFINITIONS)
    assert [item.body["custom_field_id"] for item in checked.items] == [1, 2, 7]
    assert lines_of(checked.problems) == [
        "line 5, column custom_field: no custom field is named 'Nope'",
        "line 6, column custom_field: 2 custom fields named 'Twin' apply to Story (ids 8, 9): name the field by "
        "custom_field_id",
        "line 7, column subject_type: custom field 1 applies to Story, not User",
        "line 8, column custom_field: no custom field named 'Note' applies to Estimate (they apply to Story, User)",
    ]


def test_user_relations_name_users_of_the_workspace() -> None:
    checked = check(HEADER + "Story,7,12,5\nStory,8,12,6\nStory,9,12,[7]\nStory,9,1,1\n")
    named, keys = users_to_look_up(WS, checked)
    assert named == [(WS, 5), (WS, 6), (WS, 7)]
    assert keys == [ValueKey(SubjectType.STORY, s, 12) for s in ("7", "8", "9")]
    # 5 is active; 6 is unknown; 7 is deactivated and does not hold story 9's value yet (it holds story 8's).
    users = {(WS, 5): True, (WS, 7): False}
    states = {ValueKey(SubjectType.STORY, "8", 12): KeyState(StoredValue(1, [7]), 1)}
    after = check_users(WS, checked, users, states)
    assert [item.line for item in after.items] == [2, 5]
    assert lines_of(after.problems) == [
        "line 3, column value: Owner: no such user in this workspace: 6",
        "line 4, column value: Owner: deactivated user(s) 7 cannot be added (a value that names them already may "
        "keep them)"]
    kept = check_users(WS, check(HEADER + "Story,8,12,7\n"), users, states)
    assert not kept.problems and len(kept.items) == 1


# --- batches -------------------------------------------------------------------------------------------------


def test_batches_of_a_hundred_with_keys_of_their_content() -> None:
    text = HEADER + "".join(f"Story,{n},1,{n}\n" for n in range(1, 251))
    batches = plan_batches(check(text).items)
    assert [(b.number, len(b.items), b.lines) for b in batches] == [
        (1, 100, "lines 2-101"), (2, 100, "lines 102-201"), (3, 50, "lines 202-251")]
    assert orjson.loads(batches[2].body) == {"custom_field_values": [
        {"subject_type": "Story", "subject_id": n, "custom_field_id": 1, "value": n} for n in range(201, 251)]}
    keys = [b.idempotency_key for b in batches]
    assert len(set(keys)) == 3 and all(len(key) <= 255 for key in keys)
    assert keys == [b.idempotency_key for b in plan_batches(check(text).items)]  # the same file, the same keys
    # A changed row changes its batch's key only.
    changed = plan_batches(check(text.replace("Story,150,1,150", "Story,150,1,151")).items)
    assert [b.idempotency_key == k for b, k in zip(changed, keys, strict=True)] == [True, False, True]


def test_batches_stay_within_the_body_limit() -> None:
    text = HEADER + "".join(f"Story,{n},2,{'x' * 90}\n" for n in range(10, 40))  # items of the same size
    items = check(text).items
    ten = len(orjson.dumps({"custom_field_values": [item.body for item in items[:10]]}))
    assert [len(b.items) for b in plan_batches(items, max_bytes=ten)] == [10, 10, 10]
    assert [len(b.items) for b in plan_batches(items, max_bytes=ten - 1)] == [9, 9, 9, 3]
    assert all(len(b.body) <= ten - 1 for b in plan_batches(items, max_bytes=ten - 1))
    assert [len(b.items) for b in plan_batches(items, max_bytes=10)] == [1] * 30  # too large alone: alone
    assert [len(b.items) for b in plan_batches(items, size=7, max_bytes=10**6)] == [7, 7, 7, 7, 2]


@pytest.mark.parametrize(("status", "answer"), [
    (200, Answer.APPLIED), (201, Answer.APPLIED), (202, Answer.PENDING), (429, Answer.RETRY), (503, Answer.RETRY),
    (502, Answer.RETRY), (400, Answer.REFUSED), (401, Answer.REFUSED), (404, Answer.REFUSED), (409, Answer.REFUSED),
    (412, Answer.REFUSED), (413, Answer.REFUSED), (422, Answer.REFUSED), (500, Answer.REFUSED)])
def test_what_an_answer_means(status: int, answer: Answer) -> None:
    assert classify(status) is answer


def test_retry_delays() -> None:
    assert retry_delay("3", 1) == 3.0
    assert retry_delay("0.5", 4) == 0.5
    assert retry_delay("100000", 1) == 300.0
    assert retry_delay(None, 1) == 1.0 and retry_delay(None, 3) == 4.0 and retry_delay(None, 10) == 30.0
    assert retry_delay("Wed, 21 Oct 2015 07:28:00 GMT", 2) == 2.0


def test_a_refusal_names_the_batch_and_each_line() -> None:
    text = HEADER + "".join(f"Story,{n},1,{n}\n" for n in range(1, 151))
    batch = plan_batches(check(text).items)[1]  # lines 102-151
    body = orjson.dumps({"errors": [
        {"type": "conflict", "message": "Points: value 140 is taken", "field": "value", "index": 38,
         "custom_field_id": 1},
        {"type": "validation", "message": "Field required", "field": "custom_field_values.3.subject_id"},
        {"type": "forbidden", "message": "not allowed", "field": None}]}).decode()
    assert refusal(batch, 422, body) == "\n".join([
        "batch 2 (lines 102-151) was refused (HTTP 422):",
        "  line 140, column value: Points: value 140 is taken",
        "  line 105, column subject_id: Field required",
        "  not allowed"])
    assert refusal(batch, 500, "Internal Server Error") == (
        "batch 2 (lines 102-151) was refused (HTTP 500): Internal Server Error")
    by_name = refusal(batch, 404, orjson.dumps({"errors": [{"message": "gone", "field": "custom_field_id",
                                                             "index": 0}]}).decode(), "custom_field")
    assert by_name.endswith("line 102, column custom_field: gone")


# --- the rest ------------------------------------------------------------------------------------------------


def test_export_rows() -> None:
    assert export_header(False) == ["subject_type", "subject_id", "custom_field_id", "value"]
    assert export_header(True) == ["subject_type", "subject_id", "custom_field", "value"]
    value = ExportedValue("Story", "7", 3, "Budget", [998, "USD"])
    assert export_row(value, False) == ["Story", "7", "3", '[998,"USD"]']
    assert export_row(value, True) == ["Story", "7", "Budget", '[998,"USD"]']


def test_summary() -> None:
    assert summary(Sent(250, 3), 0, 1.94) == "250 rows sent in 3 batches, 0 skipped, 1.9 s"
    assert summary(Sent(247, 3, pending=["batch 3 ..."]), 3, 12.0) == (
        "247 rows sent in 3 batches (1 still being applied), 3 skipped, 12.0 s")


def test_no_progress_bar_unless_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_wanted(False, Terminal())
    assert not progress_wanted(True, Terminal())
    assert not progress_wanted(False, io.StringIO())
