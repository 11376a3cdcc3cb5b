"""Values in and out of a workspace as CSV: ``cfv import values`` and ``cfv export values``.

A file has a header row and the columns ``subject_type,subject_id,custom_field_id,value``, in any order; a
``custom_field`` column naming the field by name may stand for ``custom_field_id``. A value cell is JSON when it
parses as JSON (``13``, ``[998,"USD"]``, ``true``, ``"007"``), else its text (``hello``, ``2024-01-31``);
:func:`render_value` writes a value so that it reads back the same.

Reading and checking a file is pure (:func:`read_csv`, :func:`check_rows`, :func:`check_users`,
:func:`plan_batches`): it runs the worker's own validation (:func:`cfv.domain.writes.validate_items`) against
the workspace's field definitions. Sending the batches to the gateway (:func:`send_batches`) and writing an
export (:func:`export_csv`) are thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TextIO

import aiohttp
import orjson
from cfv_schemas.commands import MAX_BULK
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cfv.domain.changes import KeyState
from cfv.domain.fields import FieldDefinition, ValueType
from cfv.domain.users import KnownUsers, names_users, user_errors, users_named
from cfv.domain.values import JSON, render_subject_id
from cfv.domain.writes import ItemError, ValidWrite, ValueKey, WriteItem, validate_items
from cfv.store import transfer as stored
from cfv.store.database import Connection

ID_COLUMN = "custom_field_id"
NAME_COLUMN = "custom_field"
COLUMNS = ("subject_type", "subject_id", ID_COLUMN, "value")
BATCH_SIZE = MAX_BULK
VALUES_PATH = "/api/v1/custom_field_values"

_TEXTUAL = frozenset({ValueType.STRING, ValueType.URL, ValueType.EMAIL, ValueType.FILE})


class FileError(Exception):
    """The file as a whole cannot be read: not CSV, no header, columns missing or unknown."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one row of the file cannot be imported, and where."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Row:
    """A data row of the file, its cells as written."""

    line: int  # where the row starts (the header is line 1)
    subject_type: str
    subject_id: str
    field: str  # the custom_field_id cell, or the custom_field one
    value: str


@dataclass(frozen=True, slots=True)
class Table:
    """A file read: its rows, and the problems of rows that do not fit the header."""

    by_name: bool  # fields are named by a custom_field column
    rows: list[Row]
    problems: list[Problem]

    @property
    def field_column(self) -> str:
        """The header of the column naming each row's field."""
        return NAME_COLUMN if self.by_name else ID_COLUMN


def parse_cell(text: str) -> JSON:
    """A value cell: the JSON it parses as, else its text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def render_value(value: JSON) -> str:
    """A value as a cell that :func:`parse_cell` reads back as ``value``: a string as it is, unless it would
    read as JSON (``"12"``, ``"true"``), anything else as JSON."""
    if isinstance(value, str) and parse_cell(value) == value:
        return value
    return orjson.dumps(value).decode()


def read_csv(text: str) -> Table:
    """Read a file's text (the header first), or raise :class:`FileError`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise FileError("the file is empty: it needs a header row, " + ",".join(COLUMNS))
        positions = _columns(header)
        by_name = NAME_COLUMN in positions
        names = [name if name != ID_COLUMN or not by_name else NAME_COLUMN for name in COLUMNS]
        rows: list[Row] = []
        problems: list[Problem] = []
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                problems.append(_misfit(start, cells, header))
                continue
            subject_type, subject_id, field_cell, value = (cells[positions[name]] for name in names)
            rows.append(Row(start, subject_type.strip(), subject_id.strip(),
                            field_cell if by_name else field_cell.strip(), value))
    except csv.Error as error:
        raise FileError(f"line {reader.line_num}: not readable as CSV: {error}") from None
    return Table(by_name, rows, problems)


def _columns(header: Sequence[str]) -> dict[str, int]:
    """Where each column is; the header must name the four columns, once each."""
    positions: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        if name in positions:
            raise FileError(f"the header names column {name} twice")
        positions[name] = index
    unknown = [raw for raw in header if raw.strip().lower() not in {*COLUMNS, NAME_COLUMN}]
    if unknown:
        raise FileError(f"unknown column(s) {', '.join(repr(u) for u in unknown)}: the first line must be the "
                        f"header, {','.join(COLUMNS)} (or {NAME_COLUMN} instead of {ID_COLUMN})")
    if ID_COLUMN in positions and NAME_COLUMN in positions:
        raise FileError(f"give {ID_COLUMN} or {NAME_COLUMN}, not both")
    missing = [c for c in COLUMNS if c not in positions and not (c == ID_COLUMN and NAME_COLUMN in positions)]
    if missing:
        raise FileError(f"the header lacks column(s) {', '.join(missing)}: it must name {','.join(COLUMNS)} (or "
                        f"{NAME_COLUMN} instead of {ID_COLUMN})")
    return positions


def _misfit(line: int, cells: Sequence[str], header: Sequence[str]) -> Problem:
    if len(cells) < len(header):
        return Problem(line, header[len(cells)].strip().lower(),
                       f"missing: the row has {len(cells)} cells, the header {len(header)}")
    return Problem(line, str(len(header) + 1), f"one cell too many: the row has {len(cells)} cells, the header "
                   f"{len(header)}")


@dataclass(frozen=True, slots=True)
class Item:
    """A row that passed every check: the item to send for it."""

    line: int
    body: dict[str, JSON]  # as the bulk endpoint takes it
    write: ValidWrite


@dataclass(frozen=True, slots=True)
class Checked:
    """A file checked: the items to send, and the problems of the others (by line)."""

    rows: int  # data rows read
    items: list[Item]
    problems: list[Problem]
    field_column: str = ID_COLUMN


def check_rows(workspace_id: int, table: Table, definitions: Mapping[int, FieldDefinition]) -> Checked:
    """Check every row against the workspace's field ``definitions`` (its live fields) as the worker would."""
    column = table.field_column
    problems = list(table.problems)
    candidates: list[tuple[Row, WriteItem]] = []
    by_name = _by_name(definitions.values()) if table.by_name else {}
    for row in table.rows:
        field_id = _resolve(row, by_name) if table.by_name else _field_id(row.field)
        if isinstance(field_id, str):
            problems.append(Problem(row.line, column, field_id))
            continue
        candidates.append((row, WriteItem(row.subject_type, row.subject_id, field_id, parse_cell(row.value))))
    valid, errors = validate_items(workspace_id, [item for _, item in candidates], definitions)
    problems += [_problem(candidates[e.index][0], candidates[e.index][1], e, definitions, column)
                 for e in errors if e.index is not None]
    items = [_item(candidates[w.index][0].line, candidates[w.index][1], w) for w in valid]
    return Checked(len(table.rows) + len(table.problems), items, sorted(problems, key=_by_line), column)


def users_to_look_up(workspace_id: int, checked: Checked) -> tuple[list[tuple[int, int | str]], list[ValueKey]]:
    """The users the checked items' user relations name, and the keys those items write (their current values
    may already name a deactivated user)."""
    writes = [item.write for item in checked.items]
    return users_named(workspace_id, writes), [w.key for w in writes if names_users(w.definition)]


def check_users(workspace_id: int, checked: Checked, users: KnownUsers, states: Mapping[ValueKey, KeyState]
                ) -> Checked:
    """Move the items whose user relations name unknown users (or add deactivated ones) to the problems, as the
    worker would refuse them."""
    writes = [ValidWrite(index, item.write.key, item.write.value, item.write.definition)
              for index, item in enumerate(checked.items)]
    errors = {e.index: e for e in user_errors(workspace_id, writes, users, states)}
    if not errors:
        return checked
    problems = [Problem(checked.items[i].line, "value", e.message) for i, e in errors.items() if i is not None]
    return Checked(checked.rows, [item for i, item in enumerate(checked.items) if i not in errors],
                   sorted(checked.problems + problems, key=_by_line), checked.field_column)


def _by_line(problem: Problem) -> int:
    return problem.line


def _field_id(cell: str) -> int | str:
    """The field id a cell names, or why it names none."""
    if not cell.isascii() or not cell.isdigit() or len(cell) > 19:
        return f"{cell!r} is not a custom field id (a positive integer)"
    return int(cell)


def _by_name(definitions: Iterable[FieldDefinition]) -> dict[str, list[FieldDefinition]]:
    found: dict[str, list[FieldDefinition]] = {}
    for definition in definitions:
        if not definition.deleted:
            found.setdefault(definition.name, []).append(definition)
    return found


def _resolve(row: Row, by_name: Mapping[str, list[FieldDefinition]]) -> int | str:
    """The id of the field a row names by name (and its subject type), or why there is none."""
    named = by_name.get(row.field, [])
    if not named:
        return f"no custom field is named {row.field!r}"
    fitting = [d for d in named if d.subject_type == row.subject_type]
    if len(fitting) == 1:
        return fitting[0].id
    if not fitting and len(named) == 1:
        return named[0].id  # validation says that the subject type does not fit
    if not fitting:
        return (f"no custom field named {row.field!r} applies to {row.subject_type or 'no subject type'} (they "
                f"apply to {', '.join(sorted({d.subject_type.value for d in named}))})")
    return (f"{len(fitting)} custom fields named {row.field!r} apply to {row.subject_type} (ids "
            f"{', '.join(str(d.id) for d in fitting)}): name the field by {ID_COLUMN}")


def _problem(row: Row, item: WriteItem, error: ItemError, definitions: Mapping[int, FieldDefinition],
             field_column: str) -> Problem:
    column = field_column if error.field == ID_COLUMN else error.field
    reason = error.message
    definition = definitions.get(item.custom_field_id)
    if (error.field == "value" and definition is not None and definition.value_type in _TEXTUAL
            and not isinstance(item.value, str)):
        quoted = orjson.dumps(row.value).decode()
        reason += f" (the cell reads as JSON; for the text, write it as a JSON string: {quoted})"
    return Problem(row.line, column, reason)


def _item(line: int, item: WriteItem, write: ValidWrite) -> Item:
    subject_type = write.key.subject_type
    body = {"subject_type": subject_type.value, "subject_id": render_subject_id(subject_type, write.key.subject_id),
            "custom_field_id": write.key.custom_field_id, "value": item.value}
    return Item(line, body, write)


# --- sending ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """Up to :data:`BATCH_SIZE` items sent in one request, under an idempotency key of their own."""

    number: int  # from 1
    items: Sequence[Item]
    body: bytes
    idempotency_key: str

    @property
    def lines(self) -> str:
        """The lines of the file it holds, for messages."""
        first, last = self.items[0].line, self.items[-1].line
        return f"line {first}" if first == last else f"lines {first}-{last}"


def plan_batches(items: Sequence[Item], size: int = BATCH_SIZE, max_bytes: int | None = None) -> list[Batch]:
    """The items in batches of ``size``, in file order, each body within ``max_bytes`` (the gateway's
    ``CFV_MAX_BODY_BYTES``; an item too large on its own goes alone, and the gateway refuses it).

    A batch's idempotency key is derived from its position and its content (the exact request body): running the
    same file again sends the same batches under the same keys, which the worker answers from its idempotency
    records (nothing applied twice), so an interrupted import resumes where it stopped. A file corrected after a
    refused batch resends its unchanged batches harmlessly too.
    """
    chunks: list[list[Item]] = []
    room = 0
    for item in items:
        cost = len(orjson.dumps(item.body)) + 1  # and a comma
        if not chunks or len(chunks[-1]) == size or (max_bytes is not None and cost > room):
            chunks.append([])
            room = (max_bytes or 0) - len(_ENVELOPE) + 1  # the first item has no comma
        chunks[-1].append(item)
        room -= cost
    batches = []
    for number, chunk in enumerate(chunks, 1):
        body = orjson.dumps({"custom_field_values": [item.body for item in chunk]})
        key = f"cfv-import-{number}-{hashlib.sha256(body).hexdigest()}"
        batches.append(Batch(number, chunk, body, key))
    return batches


_ENVELOPE = b'{"custom_field_values":[]}'


class Answer(Enum):
    """What to make of the gateway's answer to a batch."""

    APPLIED = "applied"
    PENDING = "pending"  # 202: accepted, the worker has not answered yet
    RETRY = "retry"
    REFUSED = "refused"


def classify(status: int) -> Answer:
    """What an HTTP status means for a batch."""
    if status in (200, 201):
        return Answer.APPLIED
    if status == 202:
        return Answer.PENDING
    if status in (429, 502, 503, 504):  # over a rate limit, or a dependency (or proxy) unavailable: nothing applied
        return Answer.RETRY
    return Answer.REFUSED


def retry_delay(retry_after: str | None, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the answer's ``Retry-After`` (seconds) when it has one,
    else a doubling backoff."""
    try:
        seconds = float(retry_after) if retry_after is not None else None
    except ValueError:
        seconds = None
    if seconds is None or seconds != seconds:  # NaN
        return float(min(2 ** (attempt - 1), 30))
    return min(max(seconds, 0.0), 300.0)


_ITEM_FIELD = re.compile(r"custom_field_values\.(\d+)\.(\w+)")


def refusal(batch: Batch, status: int, body: str, field_column: str = ID_COLUMN) -> str:
    """The message of a batch the gateway refused: the batch, its lines, and each error at its line."""
    try:
        errors = orjson.loads(body).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        errors = None
    head = f"batch {batch.number} ({batch.lines}) was refused (HTTP {status})"
    if not isinstance(errors, list) or not errors:
        return f"{head}: {body.strip()[:500] or 'no details'}"
    lines = [head + ":"]
    for error in errors:
        if not isinstance(error, dict):
            continue
        message, where = str(error.get("message", error)), error.get("field")
        index = error.get("index")
        found = _ITEM_FIELD.fullmatch(where) if isinstance(where, str) else None
        if found is not None:
            index, where = int(found[1]), found[2]
        if isinstance(index, int) and 0 <= index < len(batch.items):
            column = field_column if where == ID_COLUMN else where or "-"
            lines.append(f"  {Problem(batch.items[index].line, column, message)}")
        else:
            lines.append(f"  {message}" + (f" ({where})" if where else ""))
    return "\n".join(lines)


class Refused(Exception):
    """The import stopped: a batch was refused, or the gateway could not be reached."""


@dataclass
class Sent:
    """What :func:`send_batches` did."""

    rows: int = 0
    batches: int = 0
    pending: list[str] = field(default_factory=list)  # of each batch answered 202 (accepted, not applied yet)
    retries: int = 0


@dataclass
class Sender:
    """Sends batches to the gateway's bulk endpoint, one after the other, retrying what may be retried."""

    url: str
    api_key: str = field(repr=False)
    field_column: str = ID_COLUMN
    attempts: int = 6
    timeout: float = 120.0
    on_retry: Callable[[str], None] = lambda _: None  # told why a batch is sent again, and when
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def send(self, batches: Sequence[Batch], on_sent: Callable[[int], None]) -> Sent:
        """Send ``batches`` in order; ``on_sent(rows)`` after each. Raise :class:`Refused` to stop."""
        sent = Sent()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            for batch in batches:
                await self._send(http, batch, sent)
                sent.rows += len(batch.items)
                sent.batches += 1
                on_sent(len(batch.items))
        return sent

    async def _send(self, http: aiohttp.ClientSession, batch: Batch, sent: Sent) -> None:
        endpoint = self.url.rstrip("/") + VALUES_PATH
        headers = {"X-API-Key": self.api_key, "Idempotency-Key": batch.idempotency_key,
                   "Content-Type": "application/json"}
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                async with http.post(endpoint, data=batch.body, headers=headers) as response:
                    status, retry_after = response.status, response.headers.get("Retry-After")
                    location = response.headers.get("Location", "")
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError) as error:
                if last:
                    raise Refused(f"batch {batch.number} ({batch.lines}): the gateway at {self.url} did not answer "
                                  f"({type(error).__name__}: {error}); run the import again to resume") from None
                await self._retry(batch, f"{type(error).__name__} {error}".strip(), retry_delay(None, attempt), sent)
                continue
            answer = classify(status)
            if answer is Answer.RETRY and not last:
                await self._retry(batch, f"HTTP {status}", retry_delay(retry_after, attempt), sent)
                continue
            if answer in (Answer.RETRY, Answer.REFUSED):
                raise Refused(refusal(batch, status, text, self.field_column))
            if answer is Answer.PENDING:
                sent.pending.append(f"batch {batch.number} ({batch.lines}) was accepted and is still being applied: "
                                    f"GET {location or 'its operation'} tells how it ends")
            return
        raise AssertionError("unreachable")

    async def _retry(self, batch: Batch, why: str, delay: float, sent: Sent) -> None:
        sent.retries += 1
        self.on_retry(f"batch {batch.number} ({batch.lines}): {why}, retrying in {delay:g} s")
        await self.sleep(delay)


class _Rate(ProgressColumn):
    """Rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


@contextlib.contextmanager
def progress(total: int, *, enabled: bool, stream: TextIO) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` rows on ``stream`` (rows, rows/s, time left); yields what advances it."""
    if not enabled:
        yield lambda _: None
        return
    bar = Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), _Rate(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=Console(file=stream))
    with bar:
        task = bar.add_task("import", total=total)
        yield lambda rows: bar.advance(task, rows)


def progress_wanted(no_progress: bool, stream: TextIO) -> bool:
    """Whether to draw the bar: not when told not to, nor when ``stream`` is no terminal (a log, a pipe)."""
    return not no_progress and stream.isatty()


# --- reading the workspace, and exporting ------------------------------------------------------------------------


async def check_file(connection: Connection, workspace_id: int, table: Table) -> Checked:
    """Check ``table`` against the workspace as it is now: its fields, and the users its user relations name."""
    definitions = await stored.field_definitions(connection, workspace_id)
    checked = check_rows(workspace_id, table, definitions)
    named, keys = users_to_look_up(workspace_id, checked)
    if not named:
        return checked
    users, states = await stored.users_and_states(connection, workspace_id, named, keys)
    return check_users(workspace_id, checked, users, states)


def export_header(by_name: bool) -> list[str]:
    """The header of an export."""
    return [NAME_COLUMN if c == ID_COLUMN and by_name else c for c in COLUMNS]


def export_row(value: stored.StoredValue, by_name: bool) -> list[str]:
    """One exported value as its cells."""
    return [value.subject_type, value.subject_id, value.custom_field_name if by_name else str(value.custom_field_id),
            render_value(value.value)]


async def export_csv(connection: Connection, workspace_id: int, out: TextIO, *, subject_type: str | None = None,
                     by_name: bool = False, chunk: int = 1000) -> int:
    """Write the workspace's current values to ``out`` as CSV, a chunk at a time; return how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(export_header(by_name))
    count = 0
    async for values in stored.current_values(connection, workspace_id, subject_type, chunk=chunk):
        writer.writerows(export_row(value, by_name) for value in values)
        count += len(values)
    return count


def summary(sent: Sent, skipped: int, seconds: float) -> str:
    """The line an import ends with."""
    pending = f" ({len(sent.pending)} still being applied)" if sent.pending else ""
    return (f"{sent.rows} rows sent in {sent.batches} batches{pending}, {skipped} skipped, {seconds:.1f} s")

