"""The object store (S3 or an S3-compatible server): one client, sha256-checked transfers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from inferfleet.errors import ArtifactError
from inferfleet.settings import Settings

# How many objects `put_all` writes at once.
PUT_THREADS = 8

CHUNK = 1024 * 1024


def make_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint, with bounded retries."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key); anything else is refused."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def exists(s3: Any, uri: str) -> bool:
    """Whether the object at `uri` exists."""
    bucket, key = split_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if is_missing(e):
            return False
        raise
    return True


def is_missing(error: ClientError) -> bool:
    """Whether `error` says the object does not exist."""
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def put_bytes(s3: Any, uri: str, data: bytes, content_type: str = "application/json") -> None:
    """Write `data` as the object at `uri`, replacing any object there."""
    bucket, key = split_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def put_all(s3: Any, objects: Collection[tuple[str, bytes]], name: str) -> None:
    """Write every `(uri, data)` of `objects`, up to PUT_THREADS at once (threads named
    `name`); the first failure raises once the others are done."""
    if not objects:
        return
    with ThreadPoolExecutor(min(PUT_THREADS, len(objects)), thread_name_prefix=name) as pool:
        list(pool.map(lambda placed: put_bytes(s3, *placed), objects))


def presigned_get(s3: Any, uri: str, expiry_s: int) -> str:
    """A URL that reads the object at `uri` without credentials, for `expiry_s` seconds.

    Signing is local: no request reaches the object store, and the object need not exist.
    """
    bucket, key = split_uri(uri)
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry_s
    )
    return url


def presigner(s3: Any, expiry_s: int) -> Callable[[str], str]:
    """`presigned_get` with its client and lifetime bound: what views take to fill in
    their `…_url` fields."""
    return lambda uri: presigned_get(s3, uri, expiry_s)


def presigned_put(s3: Any, uri: str, expiry_s: int) -> str:
    """A URL that writes the object at `uri` with a plain `PUT` for `expiry_s` seconds."""
    bucket, key = split_uri(uri)
    url: str = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry_s
    )
    return url


def upload(s3: Any, path: Path, uri: str) -> None:
    """Upload a local file to `uri`."""
    bucket, key = split_uri(uri)
    s3.upload_file(str(path), bucket, key)


def download(s3: Any, uri: str, dest: Path) -> None:
    """Download `uri` to `dest`; a missing object is an ArtifactError naming it."""
    bucket, key = split_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(dest))
    except ClientError as e:
        if is_missing(e):
            raise ArtifactError(f"{uri} does not exist in the object store") from e
        raise


def download_verified(s3: Any, uri: str, dest: Path, sha256: str) -> None:
    """Download `uri` to `dest`, checking its sha256 before it appears at `dest`.

    The bytes land in a temporary file beside `dest` and are renamed into place only
    once the digest matches, so `dest` is either absent or complete and correct.
    """
    bucket, key = split_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                s3.download_fileobj(bucket, key, f)
            except ClientError as e:
                if is_missing(e):
                    raise ArtifactError(f"{uri} does not exist in the object store") from e
                raise  # throttling, outages: the caller may try again later
        actual = sha256_file(tmp)
        if actual != sha256:
            raise ArtifactError(
                f"{uri} has sha256 {actual}, the registry expects {sha256}; "
                "the artifact was not installed"
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
