"""Batch leases: which process may work on a batch, and until when.

A task that works on a batch (the ingest of a `validating` one, the results writer of
one whose jobs all ended) takes it with a lease: `lease_until` (now plus
`INFERFLEET_BATCH_LEASE_S`) and `lease_owner`, a random token drawn for that take. A
batch may be taken when its lease is free: none, or one whose time has run out.

Only the token decides who holds a batch. Every renewal, and every write the holder
makes under the lease, goes through `Lease.transaction`, whose first statement renews
the lease where the row still carries this token and one of the statuses the holder
works in: it locks the batch row until the transaction ends, so no other process takes
the batch between the check and the write. A holder whose batch left those statuses (a
cancel) gets `BatchEndedError`; one whose token is gone (its lease ran out and another
process took the batch) gets `LeaseLostError` and must write nothing more. A lease whose
time ran out but that nobody took is still the holder's: its next renewal goes through.

Steps that make no write for a while (downloading the input, writing a resubmission's
input or claim-checked inputs to S3, producing a chunk, uploading the results) run
inside `Lease.heartbeat`: a thread renews the lease every quarter of its length until
the step ends, so a live holder keeps its batch however long the step takes, and a
crashed one frees it within `INFERFLEET_BATCH_LEASE_S`. A loss the heartbeat sees is
raised by `Lease.check`, which loops call as they go, and when the step ends.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from inferfleet.errors import InferfleetError

log = logging.getLogger(__name__)

# The columns a holder's last write (the batch ending, or handed on) sets with its own.
RELEASED: dict[str, Any] = {"lease_until": None, "lease_owner": None}

FREE = "(lease_until IS NULL OR lease_until < now())"
TAKE_OLDEST = text(
    f"""
    WITH next AS (
        SELECT id FROM batches
         WHERE status = ANY(:statuses) AND {FREE}
         ORDER BY created_at
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE batches AS b
       SET lease_until = now() + make_interval(secs => :seconds), lease_owner = :owner
      FROM next
     WHERE b.id = next.id
    RETURNING b.*
    """
)
TAKE = text(
    f"""
    UPDATE batches
       SET lease_until = now() + make_interval(secs => :seconds), lease_owner = :owner
     WHERE id = :id AND status = ANY(:statuses) AND {FREE}
    RETURNING *
    """
)
RENEW = text(
    """
    UPDATE batches SET lease_until = now() + make_interval(secs => :seconds)
     WHERE id = :id AND lease_owner = :owner AND status = ANY(:statuses)
    RETURNING id
    """
)
HOLDER = text("SELECT status, lease_owner FROM batches WHERE id = :id")


class BatchEndedError(InferfleetError):
    """Raised when a leased batch left the statuses its holder works in (a cancel)."""

    def __init__(self, batch_id: str, status: str | None) -> None:
        self.batch_id = batch_id
        self.status = status
        shown = "deleted" if status is None else status
        super().__init__(f"batch {batch_id} is {shown} now; its lease holder stops")


class LeaseLostError(InferfleetError):
    """Raised when another process took a batch whose lease ran out: the former holder
    writes nothing more, and the batch is the new holder's."""

    def __init__(self, batch_id: str, owner: str) -> None:
        self.batch_id = batch_id
        super().__init__(
            f"batch {batch_id}: lease {owner[:8]}… was taken over by another process after "
            "it ran out; this holder stops and writes nothing more"
        )


@dataclass
class Lease:
    """This process's hold on batch `batch_id`, taken under token `owner`, renewed for
    `seconds` at a time while the batch is in one of `statuses`."""

    engine: Engine
    batch_id: str
    owner: str
    seconds: float
    statuses: tuple[str, ...]
    _lost: InferfleetError | None = field(default=None, repr=False)

    @property
    def _params(self) -> dict[str, Any]:
        return {
            "id": self.batch_id,
            "owner": self.owner,
            "seconds": self.seconds,
            "statuses": list(self.statuses),
        }

    def renew(self, conn: Connection) -> None:
        """Extend the lease in `conn`'s transaction, locking the batch row until it ends;
        BatchEndedError or LeaseLostError when this holder may no longer write."""
        self.check()
        if conn.execute(RENEW, self._params).one_or_none() is not None:
            return
        found = conn.execute(HOLDER, {"id": self.batch_id}).one_or_none()
        if found is None or found.status not in self.statuses:
            self._lost = BatchEndedError(self.batch_id, None if found is None else found.status)
        else:
            self._lost = LeaseLostError(self.batch_id, self.owner)
        raise self._lost

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction for a write under the lease: renewed (and the row locked) first,
        so the write happens only while this holder still holds the batch."""
        with self.engine.begin() as conn:
            self.renew(conn)
            yield conn

    def check(self) -> None:
        """Raise what a renewal found, if this holder lost the batch."""
        if self._lost is not None:
            raise self._lost

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew every `seconds / 4` in a thread while the body runs; a loss found
        meanwhile is raised when the body ends (and by `check` before)."""
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(stop,), name=f"lease-{self.batch_id}", daemon=True
        )
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
        self.check()

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 4):
            try:
                with self.transaction():
                    pass
            except (BatchEndedError, LeaseLostError):
                return
            except Exception:  # Postgres away: the next beat tries again
                log.warning("batch %s: renewing its lease failed", self.batch_id, exc_info=True)


def take_oldest(
    engine: Engine, statuses: tuple[str, ...], seconds: float
) -> tuple[Any, Lease] | None:
    """Take the oldest batch in one of `statuses` whose lease is free: its row as taken
    and the lease; None when there is none."""
    params = {"statuses": list(statuses), "seconds": seconds, "owner": secrets.token_hex(16)}
    with engine.begin() as conn:
        batch = conn.execute(TAKE_OLDEST, params).one_or_none()
    if batch is None:
        return None
    return batch, Lease(engine, batch.id, batch.lease_owner, seconds, statuses)


def take(
    engine: Engine, batch_id: str, statuses: tuple[str, ...], seconds: float
) -> tuple[Any, Lease] | None:
    """Take batch `batch_id` if it is in one of `statuses` and its lease is free: its row
    as taken and the lease; None otherwise."""
    params = {
        "id": batch_id,
        "statuses": list(statuses),
        "seconds": seconds,
        "owner": secrets.token_hex(16),
    }
    with engine.begin() as conn:
        batch = conn.execute(TAKE, params).one_or_none()
    if batch is None:
        return None
    return batch, Lease(engine, batch.id, batch.lease_owner, seconds, statuses)
