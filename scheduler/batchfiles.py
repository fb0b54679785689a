"""Batch input files, read as a stream of numbered lines (API.md, "Batches").

The format follows the input URI's extension:

- `.jsonl`, `.ndjson`: one `{"custom_id": "…", "inputs": {…}}` object per line;
- `.csv`: a header row naming `custom_id` and one column per input field; cells are
  typed by the request schema (`integer`, `number`, `boolean`, else text), and an empty
  cell is a missing field;
- `.parquet`: the same columns; a null is a missing field.

A line's number is 1-based: the physical line of a JSONL file, the record after the
header of a CSV file, the row of a Parquet file. Blank lines inside a JSONL or CSV file
are invalid lines (so every number maps to the line an editor shows); blank lines at
the end of the file are not lines at all.

Nothing here holds a file: readers take an iterator of byte chunks (or, for Parquet, a
local file, which Parquet needs for its footer) and yield one `Line` at a time.
`BatchFileError` means the file as a whole cannot be read; a bad line is only that line:
whatever reading or checking one line raises, and inputs nested deeper than
`inferfleet.jsondepth.MAX_DEPTH`, make that line invalid.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from inferfleet import jsondepth
from inferfleet.errors import FieldError, InferfleetError
from inferfleet.models.validation import SchemaValidator, validate_instance

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
CUSTOM_ID = "custom_id"
MAX_CUSTOM_ID_CHARS = 512
# Values an error report repeats are cut to this many characters of JSON, so a report
# of many long lines stays small.
MAX_ECHO_CHARS = 200
PARQUET_ROWS = 4096


class BatchFileError(InferfleetError):
    """Raised when a batch input file cannot be read at all (its header, its format)."""


@dataclass(frozen=True)
class Line:
    """One line of an input file: its fields, or why they could not be read.

    `errors` holds what is wrong with the line's shape (not JSON, no `custom_id`, …);
    the inputs are checked against the model's schema afterwards (`check`).
    """

    number: int
    custom_id: str | None
    inputs: dict[str, Any] | None
    errors: tuple[FieldError, ...] = ()


class TooLong:
    """Stands for a line longer than the limit, whose bytes were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


def file_format(uri: str) -> Format | None:
    """The format an input URI names by its extension, or None for none we read."""
    name = uri.rsplit("/", 1)[-1].lower()
    for extension, fmt in FORMATS.items():
        if name.endswith(extension):
            return fmt
    return None


def split_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes | TooLong]:
    """The lines of a byte stream, without their `\\n` or `\\r\\n`.

    A line longer than `max_bytes` is yielded as `TooLong` and its bytes are skipped, so
    no line, however long, is held whole. A final line without a newline is a line.
    """
    pending = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > max_bytes:
                        skipping = True
                        pending.clear()
                break
            if skipping:
                skipping = False
                yield TooLong(max_bytes)
            else:
                pending += chunk[start:end]
                if len(pending) > max_bytes + 1:  # + 1: a `\r` before the newline
                    yield TooLong(max_bytes)
                else:
                    yield bytes(pending[:-1] if pending.endswith(b"\r") else pending)
            pending.clear()
            start = end + 1
    if skipping:
        yield TooLong(max_bytes)
    elif pending:
        yield bytes(pending[:-1] if pending.endswith(b"\r") else pending)


def _blank(number: int) -> Line:
    return Line(number, None, None, (FieldError((), "an empty line", "empty_line", ""),))


def _without_trailing_blanks(lines: Iterable[Line | None]) -> Iterator[Line]:
    """Number-keeping filter: `None` stands for a blank line, which becomes an invalid
    line once a later line follows it, and is dropped at the end of the file."""
    blanks: list[int] = []
    number = 0
    for line in lines:
        number += 1
        if line is None:
            blanks.append(number)
            continue
        yield from (_blank(n) for n in blanks)
        blanks.clear()
        yield line


def jsonl_lines(raw: Iterable[bytes | TooLong]) -> Iterator[Line]:
    """Lines of a JSONL file, numbered from 1, from `split_lines`."""

    def parsed() -> Iterator[Line | None]:
        for number, data in enumerate(raw, 1):
            if isinstance(data, TooLong):
                msg = f"the line is longer than {data.limit} bytes"
                yield Line(number, None, None, (FieldError((), msg, "line_too_long", None),))
            elif not data.strip():
                yield None
            else:
                yield _guarded(_parse_json_line, number, data)

    return _without_trailing_blanks(parsed())


def _guarded(read: Callable[..., Line], number: int, *args: Any) -> Line:
    """`read(number, *args)`; whatever it raises makes line `number` invalid, never the file."""
    try:
        return read(number, *args)
    except Exception as e:  # noqa: BLE001 - one line's failure is that line's
        msg = f"the line cannot be read: {type(e).__name__}: {e}"
        return Line(number, None, None, (_short(FieldError((), msg, "line_unreadable", None)),))


def _too_deep(limit: int) -> FieldError:
    return FieldError(("inputs",), f"nested deeper than {limit} levels", "too_deep", None)


def _parse_json_line(number: int, data: bytes) -> Line:
    if number == 1 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark
    try:
        text = data.decode("utf-8")  # json.loads would take bytes for UTF-16 or 32
    except UnicodeDecodeError as e:
        return Line(number, None, None, (FieldError((), f"not UTF-8: {e}", "utf8_invalid"),))
    try:
        # The line's object is one level above its inputs.
        value = jsondepth.loads(text, jsondepth.MAX_DEPTH + 1)
    except jsondepth.TooDeepError:
        return Line(number, None, None, (_too_deep(jsondepth.MAX_DEPTH),))
    except json.JSONDecodeError as e:
        error = FieldError((), f"not JSON: {e.msg} at column {e.colno}", "json_invalid", text)
        return Line(number, None, None, (_short(error),))
    if not isinstance(value, dict):
        error = FieldError((), "a line must be a JSON object", "object_type", value)
        return Line(number, None, None, (_short(error),))
    errors = [
        _short(FieldError((key,), "unexpected field", "extra_forbidden", value[key]))
        for key in value
        if key not in (CUSTOM_ID, "inputs")
    ]
    custom_id, problem = _custom_id(value.get(CUSTOM_ID), CUSTOM_ID in value)
    if problem is not None:
        errors.insert(0, problem)
    inputs = value.get("inputs")
    if not isinstance(inputs, dict):
        msg = "'inputs' is a required property" if inputs is None else "must be an object"
        errors.append(_short(FieldError(("inputs",), msg, "object_type", inputs)))
        inputs = None
    return Line(number, custom_id, inputs, tuple(errors))


def _custom_id(value: Any, present: bool) -> tuple[str | None, FieldError | None]:
    if not present:
        return None, FieldError((CUSTOM_ID,), "'custom_id' is a required property", "required")
    if not isinstance(value, str) or not value:
        return None, _short(FieldError((CUSTOM_ID,), "must be a non-empty string", "string", value))
    if len(value) > MAX_CUSTOM_ID_CHARS:
        msg = f"at most {MAX_CUSTOM_ID_CHARS} characters"
        return None, _short(FieldError((CUSTOM_ID,), msg, "too_long", value))
    return value, None


def csv_lines(
    raw: Iterable[bytes | TooLong], schema: Mapping[str, Any], max_bytes: int
) -> Iterator[Line]:
    """Lines of a CSV file (header first), typed by the request `schema`.

    A physical line that is too long or not UTF-8 makes the file unreadable: a quoted
    cell may span lines, so what follows it cannot be told apart.
    """
    csv.field_size_limit(max(csv.field_size_limit(), max_bytes))
    reader = csv.reader(_text_lines(raw))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise BatchFileError(f"the CSV header cannot be read: {e}") from e
    if header:
        header[0] = header[0].removeprefix("\ufeff")
    if CUSTOM_ID not in header:
        raise BatchFileError(f"the CSV header {header[:20]} has no {CUSTOM_ID!r} column")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise BatchFileError(f"the CSV header names {repeated} more than once")
    types = _property_types(schema)

    def parsed() -> Iterator[Line | None]:
        number = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise BatchFileError(f"CSV record {number + 1} cannot be read: {e}") from e
            number += 1
            if not any(cell.strip() for cell in row):
                yield None
            elif len(row) != len(header):
                msg = f"{len(row)} cells, the header has {len(header)}"
                error = _short(FieldError((), msg, "row_length", row))
                cell = row[at] if (at := header.index(CUSTOM_ID)) < len(row) else None
                yield Line(number, _custom_id(cell, True)[0], None, (error,))
            else:
                cells = dict(zip(header, row, strict=True))
                yield _guarded(_csv_line, number, cells, types)

    yield from _without_trailing_blanks(parsed())


def _text_lines(raw: Iterable[bytes | TooLong]) -> Iterator[str]:
    for number, data in enumerate(raw, 1):
        if isinstance(data, TooLong):
            raise BatchFileError(f"line {number} is longer than {data.limit} bytes")
        try:
            yield data.decode("utf-8") + "\n"
        except UnicodeDecodeError as e:
            raise BatchFileError(f"line {number} is not UTF-8: {e}") from e


def _property_types(schema: Mapping[str, Any]) -> dict[str, list[str]]:
    types: dict[str, list[str]] = {}
    for name, spec in (schema.get("properties") or {}).items():
        declared = spec.get("type") if isinstance(spec, dict) else None
        types[name] = [declared] if isinstance(declared, str) else list(declared or [])
    return types


def _csv_line(number: int, row: dict[str, str], types: dict[str, list[str]]) -> Line:
    custom_id, problem = _custom_id(row.pop(CUSTOM_ID).strip(), True)
    inputs = {name: _typed(cell, types.get(name, [])) for name, cell in row.items() if cell != ""}
    return Line(number, custom_id, inputs, (problem,) if problem else ())


def _typed(cell: str, types: list[str]) -> Any:
    """A CSV cell as the first of the schema's types it reads as; else the text itself,
    which the schema check then reports with the cell's value."""
    for kind in types:
        try:
            if kind == "integer":
                return int(cell)
            if kind == "number":
                number = float(cell)
                return int(number) if number.is_integer() and "." not in cell else number
            if kind == "boolean" and cell.strip().lower() in ("true", "false"):
                return cell.strip().lower() == "true"
            if kind == "null" and cell.strip().lower() == "null":
                return None
        except ValueError:
            continue
    return cell


def parquet_lines(path: Path, rows_per_batch: int = PARQUET_ROWS) -> Iterator[Line]:
    """Lines of a local Parquet file, read a record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise BatchFileError(f"not a readable Parquet file: {e}") from e
    names = parquet.schema_arrow.names
    if CUSTOM_ID not in names:
        raise BatchFileError(f"the Parquet columns {names[:20]} include no {CUSTOM_ID!r}")
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=rows_per_batch):
            for row in batch.to_pylist():
                number += 1
                yield _guarded(_parquet_line, number, row)
    except (pa.ArrowException, OSError) as e:
        raise BatchFileError(f"Parquet row group after row {number} cannot be read: {e}") from e


def _parquet_line(number: int, row: dict[str, Any]) -> Line:
    raw_id = row.pop(CUSTOM_ID)
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    custom_id, problem = _custom_id(raw_id, raw_id is not None)
    inputs = {name: _plain(value) for name, value in row.items() if value is not None}
    return Line(number, custom_id, inputs, (problem,) if problem else ())


def _plain(value: Any) -> Any:
    """A Parquet value as JSON can hold it (times as ISO 8601 text, decimals as floats)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def check(line: Line, validator: SchemaValidator) -> list[FieldError]:
    """Everything wrong with `line`: its shape, else its inputs against the schema."""
    if line.errors:
        return list(line.errors)
    if jsondepth.too_deep(line.inputs, jsondepth.MAX_DEPTH) is not None:
        return [_too_deep(jsondepth.MAX_DEPTH)]
    try:
        return [_short(e) for e in validate_instance(validator, line.inputs, ("inputs",))]
    except Exception as e:  # noqa: BLE001 - one line's failure is that line's
        msg = f"the inputs cannot be checked: {type(e).__name__}: {e}"
        return [_short(FieldError(("inputs",), msg, "line_unreadable", None))]


def invalid_entry(line: Line, errors: Iterable[FieldError]) -> dict[str, Any]:
    """An `invalid_lines` entry: `{"line", "custom_id", "errors": [{"loc", "msg", "type",
    "input"}]}`, JSON-ready."""
    return {
        "line": line.number,
        "custom_id": line.custom_id,
        "errors": [
            {"loc": list(e.loc), "msg": e.msg, "type": e.type, "input": e.input} for e in errors
        ],
    }


def _short(error: FieldError) -> FieldError:
    """`error` with its echoed input made JSON-safe and cut to MAX_ECHO_CHARS."""
    value = error.input
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # NaN, infinity, or a value JSON has no form for
        value = repr(value)
        text = json.dumps(value)
    if len(text) <= MAX_ECHO_CHARS:
        return (
            error if value is error.input else FieldError(error.loc, error.msg, error.type, value)
        )
    shown = value if isinstance(value, str) else text
    return FieldError(error.loc, error.msg, error.type, shown[:MAX_ECHO_CHARS] + "…")
