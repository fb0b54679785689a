"""The client CLI's pure parts: how an outcome becomes an exit code, how --inputs reads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from inferfleet_client.cli import EXIT_CODES, exit_code, parser


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["succeeded"], 0),
        (["completed"], 0),
        (["queued"], 0),  # `get` of an unfinished job is no error
        (["failed"], 1),
        (["cancelled"], 3),
        (["expired"], 3),
        (["succeeded", "expired", "succeeded"], 3),
        (["cancelled", "failed"], 1),  # the worst outcome wins
        ([], 0),
    ],
)
def test_exit_codes_say_how_it_ended(statuses: list[str], code: int) -> None:
    assert exit_code(statuses) == code


def test_exit_codes_are_distinct_and_documented_in_help() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6]
    epilog = parser().epilog or ""
    for code, what in EXIT_CODES.items():
        assert f"{code}  {what}" in epilog


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["jobs", "submit", "m", *argv])


def test_inputs_read_json_or_a_file_of_one_object_an_array_or_lines(tmp_path: Path) -> None:
    assert parse("--inputs", '{"a": 1}').inputs == {"a": 1}
    one = tmp_path / "one.json"
    one.write_text('{"a": 2}')
    assert parse("--inputs", f"@{one}").inputs == {"a": 2}
    array = tmp_path / "array.json"
    array.write_text('[{"a": 1}, {"a": 2}]')
    assert parse("--inputs", f"@{array}").inputs == [{"a": 1}, {"a": 2}]
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": 3}\n')
    assert parse("--inputs", f"@{lines}").inputs == [{"a": 1}, {"a": 3}]


@pytest.mark.parametrize("bad", ["{nope", "[1, 2]", "[]", '"text"'])
def test_inputs_that_are_not_objects_are_a_usage_error(bad: str) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--inputs", bad)
    assert exited.value.code == 2


def test_json_and_quiet_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["jobs", "get", "j", "--json", "--quiet"])
