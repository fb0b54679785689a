"""The `inferfleet-client` command (also `inferfleet jobs …` / `inferfleet batches …`
where the server package is installed): submit and follow jobs and batches.

Exit codes (EXIT_CODES): 0 the job succeeded or the batch completed (or, for commands
that do not wait, the request succeeded); 1 a job or the batch failed; 2 usage error;
3 a job or the batch was cancelled, or a job expired; 4 a wait's --timeout passed
first; 5 the API answered an error; 6 the API could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from inferfleet_client.client import Client
from inferfleet_client.errors import (
    APIError,
    ConnectionFailedError,
    InferfleetError,
    WaitTimeoutError,
)
from inferfleet_client.flows.jobs import Progress
from inferfleet_client.models import Batch, BatchProgress, Job
from inferfleet_client.progress import ProgressLine
from inferfleet_client.retries import RetryPolicy

OK, FAILED, USAGE, CANCELLED, TIMEOUT, API_ERROR, UNREACHABLE = 0, 1, 2, 3, 4, 5, 6
EXIT_CODES = {
    OK: "the job succeeded, the batch completed, or the request succeeded",
    FAILED: "a job or the batch failed",
    USAGE: "usage error",
    CANCELLED: "a job or the batch was cancelled, or a job expired",
    TIMEOUT: "--timeout passed before the job or batch ended",
    API_ERROR: "the API answered an error (the problem is printed on stderr)",
    UNREACHABLE: "the API could not be reached",
}
_BY_STATUS = {"succeeded": OK, "completed": OK, "failed": FAILED, "cancelled": CANCELLED,
              "expired": CANCELLED}  # fmt: skip


def exit_code(statuses: Sequence[str]) -> int:
    """How a set of ended objects ended: the worst of failed, cancelled/expired, else 0.
    Objects still running count as succeeded (`get` of a running job is no error)."""
    codes = {_BY_STATUS.get(s, OK) for s in statuses}
    return FAILED if FAILED in codes else CANCELLED if CANCELLED in codes else OK


class Output:
    """Where results go: stdout as text, as JSON (`--json`), or only IDs (`--quiet`);
    progress lines on stderr unless quiet."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.quiet = bool(args.quiet)

    def progress(self, label: str, unit: str = "") -> ProgressLine:
        return ProgressLine(label, unit=unit, enabled=not self.quiet)

    def show(self, value: BaseModel | list[Any], text: str, ids: Sequence[str]) -> None:
        if self.json:
            print(_as_json(value))
        elif self.quiet:
            for i in ids:
                print(i)
        else:
            print(text)


def _as_json(value: BaseModel | list[Any]) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps([v.model_dump(mode="json") for v in value])


def _job_line(job: Job) -> str:
    if job.status == "succeeded":
        result = json.dumps(job.outputs) if job.outputs is not None else job.output_uri
    elif job.error is not None:
        result = f"{job.error.type}: {job.error.message}"
    else:
        result = ""
    return f"{job.id}\t{job.status}\t{job.model}:{job.version}\t{result}".rstrip()


def _batch_line(batch: Batch) -> str:
    c = batch.counts
    line = (
        f"{batch.id}\t{batch.status}\t{batch.model}:{batch.version}\ttotal {c.total}, "
        f"succeeded {c.succeeded}, failed {c.failed}, cancelled {c.cancelled}, "
        f"expired {c.expired}, invalid lines {len(batch.invalid_lines)}"
    )
    if batch.error is not None:
        line += f"\t{batch.error.type}: {batch.error.message}"
    if batch.output_uri and batch.done:
        line += f"\tresults {batch.output_uri}"
    return line


def _inputs(value: str) -> list[dict[str, Any]] | dict[str, Any]:
    """`--inputs`: JSON, or `@file` holding a JSON object, a JSON array of objects, or
    JSON lines (one object each)."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        parsed: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"--inputs {value!r} is not JSON: {e}") from e
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or not all(isinstance(i, dict) for i in items):
        raise argparse.ArgumentTypeError(
            f"--inputs {value!r} must hold a JSON object or a list of objects"
        )
    return parsed if isinstance(parsed, dict) else items


def jobs_submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    inputs = args.inputs
    if isinstance(inputs, dict):
        created = client.jobs.create(args.model, inputs, version=args.version, webhook=args.webhook)
        if not args.wait:
            out.show(created, f"{created.id}\t{created.status}", [created.id])
            return OK
        return _wait_jobs(client, [created.id], args, out)
    bar = out.progress("submitting", "jobs")
    ids = client.jobs.create_many(
        args.model, inputs, version=args.version, webhook=args.webhook,
        on_progress=lambda p: bar.update(p.done, p.total),
    )  # fmt: skip
    bar.close()
    if not args.wait:
        print(json.dumps(ids) if out.json else "\n".join(ids))
        return OK
    return _wait_jobs(client, ids, args, out)


def jobs_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    job = client.jobs.get(args.id)
    out.show(job, _job_line(job), [job.id])
    return exit_code([job.status])


def jobs_wait(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _wait_jobs(client, args.ids, args, out)


def _wait_jobs(client: Client, ids: list[str], args: argparse.Namespace, out: Output) -> int:
    if len(ids) == 1:
        job = client.jobs.wait(ids[0], timeout_s=args.timeout)
        out.show(job, _job_line(job), [job.id])
        return exit_code([job.status])
    bar = out.progress("waiting", "jobs")

    def moved(p: Progress) -> None:
        bar.update(p.done, p.total)

    try:
        ended = client.jobs.wait_many(ids, timeout_s=args.timeout, on_progress=moved)
    finally:
        bar.close()
    out.show(ended, "\n".join(_job_line(j) for j in ended), [j.id for j in ended])
    return exit_code([j.status for j in ended])


def batches_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    source: str = args.file
    upload = None
    if not source.startswith("s3://"):
        if not Path(source).is_file():
            print(f"inferfleet-client: no such file: {source}", file=sys.stderr)
            return USAGE
        upload = out.progress("uploading", "B")

    def sent(done: int, total: int) -> None:
        if upload is not None:
            upload.update(done, total)

    batch = client.batches.create(
        source, model=args.model, version=args.version, output_uri=args.output_uri,
        webhook=args.webhook, skip_invalid=args.skip_invalid, on_upload=sent,
    )  # fmt: skip
    if upload is not None:
        upload.close()
    if not args.wait:
        out.show(batch, _batch_line(batch), [batch.id])
        return OK
    return _follow(client, batch.id, args, out)


def batches_watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _follow(client, args.id, args, out)


def batches_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    batch = client.batches.get(args.id)
    out.show(batch, _batch_line(batch), [batch.id])
    return exit_code([batch.status])


def batches_results(client: Client, args: argparse.Namespace, out: Output) -> int:
    for result in client.batches.results(args.id):
        print(result.model_dump_json())
    return OK


def _follow(client: Client, batch_id: str, args: argparse.Namespace, out: Output) -> int:
    bar = out.progress(batch_id, "lines")

    def moved(batch: BatchProgress) -> None:
        bar.update(batch.counts.ended, batch.counts.total, batch.estimated_completion_at)

    try:
        batch = client.batches.wait(batch_id, timeout_s=args.timeout, on_progress=moved)
    finally:
        bar.close()
    out.show(batch, _batch_line(batch), [batch.id])
    return exit_code([batch.status])


def parser(prog: str = "inferfleet-client") -> argparse.ArgumentParser:
    """The command line; `prog` is how the command was called."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the API's base URL (default: $INFERFLEET_URL)")
    common.add_argument("--api-key", help="the API key (default: $INFERFLEET_API_KEY)")
    common.add_argument(
        "--max-retries", type=int, default=RetryPolicy.max_retries,
        help="times a request is sent again after 429, 503 or a lost connection",
    )  # fmt: skip
    mode = common.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print results as JSON")
    mode.add_argument("-q", "--quiet", action="store_true", help="print IDs only, no progress")
    waits = argparse.ArgumentParser(add_help=False)
    waits.add_argument("--timeout", type=float, help="seconds to wait at most (exit code 4)")

    codes = "\n".join(f"  {code}  {what}" for code, what in EXIT_CODES.items())
    top = argparse.ArgumentParser(
        prog=prog,
        description="Submit and follow inferfleet jobs and batches.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = top.add_subparsers(dest="group", required=True)

    jobs = groups.add_parser("jobs", help="jobs").add_subparsers(dest="action", required=True)
    submit = jobs.add_parser("submit", parents=[common, waits], help="submit one or many jobs")
    submit.add_argument("model")
    submit.add_argument(
        "--inputs", required=True, type=_inputs,
        help="a JSON object, or @FILE holding one, a JSON array or JSON lines (bulk submit)",
    )  # fmt: skip
    submit.add_argument("--version", default="production", help="a version or an alias")
    submit.add_argument("--webhook", help="URL to post the job's terminal events to")
    submit.add_argument("--wait", action="store_true", help="wait until the jobs end")
    submit.set_defaults(run=jobs_submit)
    get = jobs.add_parser("get", parents=[common], help="a job as it is now")
    get.add_argument("id")
    get.set_defaults(run=jobs_get)
    wait = jobs.add_parser("wait", parents=[common, waits], help="wait until jobs end")
    wait.add_argument("ids", nargs="+", metavar="id")
    wait.set_defaults(run=jobs_wait)

    batches = groups.add_parser("batches", help="batches").add_subparsers(
        dest="action", required=True
    )
    create = batches.add_parser(
        "create", parents=[common, waits], help="score a local file or an s3:// URI"
    )
    create.add_argument("file", help="a local .jsonl, .csv or .parquet file, or an s3:// URI")
    create.add_argument("--model", required=True)
    create.add_argument("--version", default="production")
    create.add_argument("--output-uri", help="s3:// folder for results.jsonl")
    create.add_argument("--webhook", help="URL to post the batch's terminal event to")
    create.add_argument("--skip-invalid", action="store_true", help="run the valid lines only")
    create.add_argument("--wait", action="store_true", help="follow it until it ends")
    create.set_defaults(run=batches_create)
    watch = batches.add_parser("watch", parents=[common, waits], help="follow a batch to its end")
    watch.add_argument("id")
    watch.set_defaults(run=batches_watch)
    bget = batches.add_parser("get", parents=[common], help="a batch as it is now")
    bget.add_argument("id")
    bget.set_defaults(run=batches_get)
    results = batches.add_parser("results", parents=[common], help="its results, as JSON lines")
    results.add_argument("id")
    results.set_defaults(run=batches_results)
    return top


def main(argv: Sequence[str] | None = None, prog: str = "inferfleet-client") -> int:
    """Entry point of `inferfleet-client`; `inferfleet jobs|batches …` calls it too."""
    top = parser(prog)
    args = top.parse_args(argv)
    out = Output(args)
    try:
        retries = RetryPolicy(max_retries=max(0, args.max_retries))
        with Client(args.url, api_key=args.api_key, retries=retries) as client:
            return int(args.run(client, args, out))
    except WaitTimeoutError as e:
        last = e.last
        if out.json and isinstance(last, BaseModel):
            print(last.model_dump_json())
        print(f"{prog}: {e}", file=sys.stderr)
        return TIMEOUT
    except APIError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        for error in e.errors:
            where = ".".join(map(str, error.loc))
            print(f"  {where}: {error.msg} (got {error.input!r})", file=sys.stderr)
        return API_ERROR
    except ConnectionFailedError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return UNREACHABLE
    except (InferfleetError, ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
