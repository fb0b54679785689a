"""The reference of bench/api.py: a bare FastAPI app with the API's request and response
models and nothing behind them (no key, no database, no Kafka).

    python -m bench.bare_api --port P [--workers N]

It is served by `api.serving.server_options`, the uvicorn settings of `inferfleet api`,
with the same number of processes, so the two differ only in what a request does.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI, Response

from api.serving import server_options
from inferfleet.ids import new_job_id
from inferfleet.jobs.schemas import JobCreated, JobSubmit, JobView

app = FastAPI(title="bare")
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


@app.post("/v1/jobs", status_code=202, response_model=JobCreated)
async def create_job(body: JobSubmit, response: Response) -> JobCreated:
    """Parse and validate the body as `POST /v1/jobs` does, and answer as it does."""
    job_id = new_job_id()
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobCreated(
        id=job_id, status="queued", model=body.model, version="1", created_at=datetime.now(UTC)
    )


@app.get("/v1/jobs/{job_id}", response_model=JobView)
async def read_job(job_id: str) -> JobView:
    """A queued job with this ID, shaped as `GET /v1/jobs/{id}` answers."""
    return JobView(
        id=job_id,
        status="queued",
        model="fraud",
        version="1",
        outputs=None,
        output_uri=None,
        output_url=None,
        error=None,
        attempts=0,
        metadata={},
        batch_id=None,
        created_at=CREATED,
        started_at=None,
        completed_at=None,
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run("bench.bare_api:app", **server_options(args.host, args.port, args.workers))


if __name__ == "__main__":
    main()
