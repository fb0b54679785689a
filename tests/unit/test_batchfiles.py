"""Batch input files (JSONL, CSV, Parquet) read line by line, validation reports with line
numbers, and the results file's lines: pure, without services."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferfleet.ids import batch_job_id, new_batch_id, new_job_id
from inferfleet.models.validation import SchemaValidator, validator_for
from scheduler.batchfiles import (
    BatchFileError,
    Line,
    TooLong,
    check,
    csv_lines,
    file_format,
    invalid_entry,
    jsonl_lines,
    parquet_lines,
    split_lines,
)
from scheduler.batchresults import (
    invalid_line,
    result_line,
    results_lines,
    results_uri,
    stream,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["amount", "category", "hour"],
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "category": {"type": "string", "enum": ["food", "travel"]},
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "flagged": {"type": "boolean"},
    },
}
GOOD = {"amount": 12.5, "category": "food", "hour": 3}


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/t/in.jsonl", "jsonl"),
        ("s3://b/t/in.NDJSON", "jsonl"),
        ("s3://b/t/in.csv", "csv"),
        ("s3://b/t/2026-11-25.parquet", "parquet"),
        ("s3://b/t/in.json", None),
        ("s3://b/t/jsonl", None),
    ],
)
def test_the_format_follows_the_extension(uri: str, expected: str | None) -> None:
    assert file_format(uri) == expected


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_lines_split_the_same_whatever_the_chunks(size: int) -> None:
    data = b'{"a": 1}\r\n\n{"b": 2}\nlast-without-newline'
    got = list(split_lines(chunks(data, size), max_bytes=100))
    assert got == [b'{"a": 1}', b"", b'{"b": 2}', b"last-without-newline"]


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_a_line_over_the_limit_is_dropped_not_held(size: int) -> None:
    data = b"short\n" + b"x" * 50 + b"\nnext\n" + b"y" * 50
    got = list(split_lines(chunks(data, size), max_bytes=20))
    assert got[0] == b"short"
    assert isinstance(got[1], TooLong)
    assert got[2] == b"next"
    assert isinstance(got[3], TooLong)
    assert len(got) == 4


def jsonl(*lines: Any) -> list[Line]:
    raw = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    return list(jsonl_lines(raw))


def test_jsonl_lines_carry_their_number_custom_id_and_inputs() -> None:
    lines = jsonl({"custom_id": "a", "inputs": GOOD}, {"custom_id": "b", "inputs": GOOD})
    assert [(x.number, x.custom_id, x.inputs, x.errors) for x in lines] == [
        (1, "a", GOOD, ()),
        (2, "b", GOOD, ()),
    ]


def test_jsonl_blank_lines_inside_are_invalid_and_trailing_ones_are_not_lines() -> None:
    lines = jsonl(
        {"custom_id": "a", "inputs": GOOD}, b"", b"  ", {"custom_id": "b", "inputs": GOOD}, b"", b""
    )
    assert [x.number for x in lines] == [1, 2, 3, 4]
    assert [e.type for x in lines[1:3] for e in x.errors] == ["empty_line", "empty_line"]


@pytest.mark.parametrize(
    ("raw", "loc", "kind"),
    [
        (b"{not json", (), "json_invalid"),
        (b"[1, 2]", (), "object_type"),
        (b"\xff\xfe", (), "utf8_invalid"),
        (json.dumps({"inputs": GOOD}).encode(), ("custom_id",), "required"),
        (json.dumps({"custom_id": 7, "inputs": GOOD}).encode(), ("custom_id",), "string"),
        (json.dumps({"custom_id": "x" * 513, "inputs": GOOD}).encode(), ("custom_id",), "too_long"),
        (json.dumps({"custom_id": "a"}).encode(), ("inputs",), "object_type"),
        (json.dumps({"custom_id": "a", "inputs": [1]}).encode(), ("inputs",), "object_type"),
        (
            json.dumps({"custom_id": "a", "inputs": GOOD, "extra": 1}).encode(),
            ("extra",),
            "extra_forbidden",
        ),
    ],
)
def test_a_jsonl_line_of_the_wrong_shape_says_where(
    raw: bytes, loc: tuple[str, ...], kind: str
) -> None:
    (line,) = jsonl_lines([raw])
    assert (line.errors[0].loc, line.errors[0].type) == (loc, kind)


def test_a_too_long_jsonl_line_is_an_invalid_line() -> None:
    (line,) = jsonl_lines([TooLong(1024)])
    assert line.errors[0].type == "line_too_long"
    assert "1024" in line.errors[0].msg


def test_a_byte_order_mark_is_not_part_of_the_first_line() -> None:
    (line,) = jsonl_lines(
        [b"\xef\xbb\xbf" + json.dumps({"custom_id": "a", "inputs": GOOD}).encode()]
    )
    assert line.errors == ()


def report(lines: list[Line]) -> list[dict[str, Any]]:
    validator = validator_for(SCHEMA)
    return [invalid_entry(x, errs) for x in lines if (errs := check(x, validator))]


def test_validation_reports_every_bad_field_by_line_number() -> None:
    lines = jsonl(
        {"custom_id": "ok", "inputs": GOOD},
        {"custom_id": "bad-hour", "inputs": {**GOOD, "hour": 25}},
        b"",
        {"custom_id": "two", "inputs": {"amount": -1, "category": "cars", "hour": 1}},
        {"custom_id": "missing", "inputs": {"amount": 1, "category": "food"}},
        b"{oops",
    )
    got = report(lines)
    assert [(e["line"], e["custom_id"]) for e in got] == [
        (2, "bad-hour"),
        (3, None),
        (4, "two"),
        (5, "missing"),
        (6, None),
    ]
    assert got[0]["errors"] == [
        {
            "loc": ["inputs", "hour"],
            "msg": "25 is greater than the maximum of 23",
            "type": "maximum",
            "input": 25,
        }
    ]
    assert sorted(e["loc"][1] for e in got[2]["errors"]) == ["amount", "category"]
    assert got[3]["errors"][0]["loc"] == ["inputs", "hour"]
    assert got[3]["errors"][0]["type"] == "required"
    json.dumps(got)  # the report is stored as JSON


def test_echoed_values_are_cut_short_and_json_safe() -> None:
    huge = "z" * 10_000
    (line,) = jsonl_lines(
        [json.dumps({"custom_id": "a", "inputs": {**GOOD, "category": huge}}).encode()]
    )
    (entry,) = report([line])
    assert len(entry["errors"][0]["input"]) < 300
    (nan,) = jsonl_lines(
        [b'{"custom_id": "n", "inputs": {"amount": NaN, "category": "food", "hour": 1}}']
    )
    (entry,) = report([nan])
    assert entry["errors"][0]["type"] == "finite_number"
    json.dumps(entry, allow_nan=False)


def csv_of(text: str) -> list[Line]:
    return list(csv_lines(split_lines([text.encode()], 1000), SCHEMA, 1000))


def test_csv_cells_are_typed_by_the_schema() -> None:
    lines = csv_of('custom_id,amount,category,hour,flagged\na,12.5,food,3,true\nb,7,"travel",0,\n')
    assert [(x.number, x.custom_id, x.inputs) for x in lines] == [
        (1, "a", {"amount": 12.5, "category": "food", "hour": 3, "flagged": True}),
        (2, "b", {"amount": 7, "category": "travel", "hour": 0}),
    ]
    assert report(lines) == []


def test_csv_lines_are_records_after_the_header_and_bad_ones_are_reported() -> None:
    lines = csv_of(
        "\ufeffcustom_id,amount,category,hour\n"
        "a,1,food,3\n"
        'b,2,"multi\nline",4\n'
        "c,lots,food,3\n"
        "d,1,food\n"
        ",,,\n"
        "e,1,food,xx\n"
        "\n"
    )
    assert [x.number for x in lines] == [1, 2, 3, 4, 5, 6]
    got = {e["line"]: e["errors"] for e in report(lines)}
    assert got[2][0]["loc"] == ["inputs", "category"]
    assert got[3][0] == {
        "loc": ["inputs", "amount"],
        "msg": "'lots' is not of type 'number'",
        "type": "type",
        "input": "lots",
    }
    assert got[4][0]["type"] == "row_length"
    assert got[5][0]["type"] == "empty_line"
    assert got[6][0]["input"] == "xx"
    assert 1 not in got


def test_a_csv_without_custom_id_or_with_undecodable_bytes_cannot_be_read() -> None:
    with pytest.raises(BatchFileError, match="custom_id"):
        csv_of("id,amount\n1,2\n")
    with pytest.raises(BatchFileError, match="not UTF-8"):
        list(csv_lines(split_lines([b"custom_id,amount\nx,\xff\n"], 100), SCHEMA, 100))
    assert csv_of("") == []


def test_parquet_rows_are_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table(
        {
            "custom_id": [1, 2, 3],
            "amount": [12.5, None, 3.0],
            "category": ["food", "travel", "cars"],
            "hour": [3, 4, 5],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    lines = list(parquet_lines(path, rows_per_batch=2))
    assert [(x.number, x.custom_id) for x in lines] == [(1, "1"), (2, "2"), (3, "3")]
    assert lines[0].inputs == {"amount": 12.5, "category": "food", "hour": 3}
    got = {e["line"]: [err["loc"] for err in e["errors"]] for e in report(lines)}
    assert got == {2: [["inputs", "amount"]], 3: [["inputs", "category"]]}


def test_a_file_that_is_not_parquet_or_lacks_custom_id_cannot_be_read(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.parquet"
    bogus.write_bytes(b"not parquet at all")
    with pytest.raises(BatchFileError, match="Parquet"):
        list(parquet_lines(bogus))
    nameless = tmp_path / "nameless.parquet"
    pq.write_table(pa.table({"amount": [1.0]}), nameless)
    with pytest.raises(BatchFileError, match="custom_id"):
        list(parquet_lines(nameless))


def job(line: int, status: str, **fields: Any) -> Any:
    base = {
        "line": line,
        "id": f"job_{line}",
        "custom_id": f"c{line}",
        "status": status,
        "outputs": None,
        "output_uri": None,
        "error": None,
    }
    return SimpleNamespace(**{**base, **fields})


def test_a_results_line_has_outputs_or_an_error() -> None:
    ok = json.loads(result_line(job(1, "succeeded", outputs={"label": 1})))
    assert ok == {
        "custom_id": "c1",
        "job_id": "job_1",
        "status": "succeeded",
        "outputs": {"label": 1},
    }
    large = json.loads(result_line(job(2, "succeeded", output_uri="s3://b/results/x.json")))
    assert large["outputs"] is None
    assert large["output_uri"] == "s3://b/results/x.json"
    error = {"type": "expired", "message": "the job was not started before its deadline"}
    assert json.loads(result_line(job(3, "expired", error=error)))["error"] == error
    cancelled = json.loads(result_line(job(4, "cancelled")))
    assert cancelled["error"]["type"] == "cancelled"
    assert "outputs" not in cancelled


def test_results_follow_input_order_and_fill_skipped_lines_as_invalid() -> None:
    entry = {
        "line": 2,
        "custom_id": "c2",
        "errors": [{"loc": ["inputs"], "msg": "m", "type": "t", "input": None}],
    }
    lines = [
        json.loads(x)
        for x in results_lines(
            6, [job(1, "succeeded"), job(3, "failed"), job(5, "succeeded")], {2: entry}
        )
    ]
    assert [(x["custom_id"], x["status"]) for x in lines] == [
        ("c1", "succeeded"),
        ("c2", "invalid"),
        ("c3", "failed"),
        (None, "invalid"),
        ("c5", "succeeded"),
        (None, "invalid"),
    ]
    assert lines[1]["error"]["errors"] == entry["errors"]
    assert lines[1]["job_id"] is None
    assert "first invalid lines" in lines[3]["error"]["message"]
    assert json.loads(invalid_line(9, None))["error"]["type"] == "invalid_input"
    assert list(results_lines(0, [], {})) == []


def test_results_go_beside_the_output_prefix() -> None:
    assert results_uri("s3://b/t/out/") == "s3://b/t/out/results.jsonl"
    assert results_uri("s3://b/t/out") == "s3://b/t/out/results.jsonl"


@pytest.mark.parametrize("read", [1, 5, 1 << 20])
def test_a_stream_of_chunks_reads_like_a_file(read: int) -> None:
    parts = [b"abc", b"", b"defgh", b"i" * 3000]
    f = stream(iter(parts))
    got = bytearray()
    while block := f.read(read):
        got += block
    assert bytes(got) == b"".join(parts)
    assert isinstance(f, io.BufferedReader)


def test_batch_job_ids_are_the_same_each_time_and_sort_by_line() -> None:
    batch = new_batch_id()
    ids = [batch_job_id(batch, n) for n in (1, 2, 10, 1_000_000)]
    assert ids == [batch_job_id(batch, n) for n in (1, 2, 10, 1_000_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert all(i.startswith("job_") and len(i) == 30 for i in ids)
    assert batch_job_id(new_batch_id(), 1) != ids[0]


def test_batch_job_ids_overlap_no_ids_made_in_the_same_millisecond() -> None:
    """Batch and job IDs made in one millisecond follow each other: the lines of one
    batch must not take the IDs of the next batch's lines, nor of the next submit's jobs."""
    made = [new_batch_id() for _ in range(50)] + [new_job_id() for _ in range(1000)]
    batches = [m for m in made if m.startswith("bat_")]
    lines = [batch_job_id(b, n) for b in batches for n in range(1, 101)]
    assert len(set(lines)) == len(lines)
    assert set(lines).isdisjoint(made)


def test_a_line_number_past_the_id_s_room_is_refused() -> None:
    with pytest.raises(ValueError, match="line 4294967296"):
        batch_job_id(new_batch_id(), 1 << 32)


class UnforeseenError(Exception):
    """An exception type no code in the project knows about."""


def test_a_line_nested_too_deeply_is_invalid_and_the_next_lines_are_read() -> None:
    deep = b'{"custom_id": "deep", "inputs": {"amount": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    nested: Any = 1
    for _ in range(64):
        nested = [nested]
    lines = jsonl(
        deep,
        {"custom_id": "65", "inputs": {**GOOD, "x": nested}},
        {"custom_id": "ok", "inputs": GOOD},
    )
    assert [x.number for x in lines] == [1, 2, 3]
    errors = {e["line"]: e["errors"] for e in report(lines)}
    assert set(errors) == {1, 2}
    for line in (1, 2):
        assert errors[line][0]["loc"] == ["inputs"]
        assert errors[line][0]["type"] == "too_deep"
        assert "deeper than 64 levels" in errors[line][0]["msg"]


def test_whatever_reading_one_line_raises_makes_only_that_line_invalid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import scheduler.batchfiles

    real = scheduler.batchfiles._custom_id

    def custom_id(value: Any, present: bool) -> Any:
        if value == "boom":
            raise UnforeseenError("nobody saw this coming")
        return real(value, present)

    monkeypatch.setattr(scheduler.batchfiles, "_custom_id", custom_id)
    from_jsonl = jsonl(
        {"custom_id": "a", "inputs": GOOD},
        {"custom_id": "boom", "inputs": GOOD},
        {"custom_id": "b", "inputs": GOOD},
    )
    header = "custom_id,amount,category,hour\n"
    from_csv = list(
        csv_lines([header.encode(), b"a,1,food,3", b"boom,1,food,3", b"b,1,food,3"], SCHEMA, 1024)
    )
    path = tmp_path / "in.parquet"
    table = {"custom_id": ["a", "boom", "b"], "amount": [1.0] * 3, "category": ["food"] * 3}
    pq.write_table(pa.table({**table, "hour": [3] * 3}), path)
    from_parquet = list(parquet_lines(path))

    for lines in (from_jsonl, from_csv, from_parquet):
        assert [x.number for x in lines] == [1, 2, 3]
        errors = {e["line"]: e["errors"] for e in report(lines)}
        assert list(errors) == [2]
        assert errors[2][0]["type"] == "line_unreadable"
        assert "UnforeseenError: nobody saw this coming" in errors[2][0]["msg"]


def test_whatever_checking_one_line_raises_makes_only_that_line_invalid() -> None:
    class Broken:
        def iter_errors(self, instance: Any) -> Any:
            if instance.get("hour") == 13:
                raise UnforeseenError("the validator broke")
            return iter(())

    validator = SchemaValidator(Broken(), None)  # type: ignore[arg-type]

    lines = jsonl(
        {"custom_id": "a", "inputs": GOOD},
        {"custom_id": "b", "inputs": {**GOOD, "hour": 13}},
        {"custom_id": "c", "inputs": GOOD},
    )
    errors = [check(x, validator) for x in lines]
    assert errors[0] == errors[2] == []
    assert errors[1][0].type == "line_unreadable"
    assert "UnforeseenError: the validator broke" in errors[1][0].msg
