"""inferfleet.jobs.schemas and inferfleet.tenants.schemas: the request bodies' own rules
(upload file names, input URIs)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from inferfleet.jobs.schemas import JobSubmit
from inferfleet.tenants.schemas import UploadCreate


@pytest.mark.parametrize(
    "filename", ["in.json", "rows-2024_01.jsonl", "a", "A.B.C", "_x", "-x", "x" * 200]
)
def test_upload_filenames_accepted(filename: str) -> None:
    assert UploadCreate(filename=filename).filename == filename


@pytest.mark.parametrize(
    "filename",
    [
        "",
        ".",
        "..",
        ".hidden",
        "a/b.json",
        "../b.json",
        "a\\b.json",
        "a%2fb.json",
        "a b.json",
        "a\nb",
        "a\x00b",
        "é.json",
        "x" * 201,
    ],
)
def test_upload_filenames_refused_naming_the_field(filename: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UploadCreate(filename=filename)
    assert [e["loc"] for e in caught.value.errors()] == [("filename",)]


def job(**changes: Any) -> dict[str, Any]:
    return {"model": "fraud", **changes}


@pytest.mark.parametrize(
    "uri", ["s3://inferfleet/tenants/acme/in.json", "s3://b/k", "s3://b/a/../k"]
)
def test_input_uri_accepted_in_shape(uri: str) -> None:
    assert JobSubmit.model_validate(job(input_uri=uri)).input_uri == uri


@pytest.mark.parametrize(
    "uri",
    ["https://x/in.json", "s3://bucket", "s3://bucket/", "s3://b/folder/", "s3:///k", "x" * 2000],
)
def test_input_uri_refused_in_shape(uri: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSubmit.model_validate(job(input_uri=uri))
    assert caught.value.errors()[0]["loc"] == ("input_uri",)


@pytest.mark.parametrize(
    "body", [job(), job(inputs={"x": 1}, input_uri="s3://b/k")], ids=["neither", "both"]
)
def test_exactly_one_of_inputs_and_input_uri(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of inputs and input_uri"):
        JobSubmit.model_validate(body)
