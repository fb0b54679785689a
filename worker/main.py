"""The worker: load models, then for each batch poll → plan → run → persist → commit.

The steps run as a pipeline (`worker.pipeline`): the loop's thread polls and decodes
the next batch (a unit; beside interactive jobs a batch unit is decoded by its
execution thread instead) while an execution thread claims, runs and writes the one
before, and commits each batch's offsets once the execution thread reports it written.
Planning claims the jobs; one pure function
(`worker.plan.plan_batch`) then says what runs, what waits for its version, what is
dead-lettered and what runs alone. The batch's counts, metrics and log lines are its
observer's: the loop calls the observer's hooks at each step (`worker.observe`).

Each polled batch is handled whole before its offsets are committed, so a crash at any
point means the batch is redelivered, and the status and claim-token guards in
`persist` make the second pass write nothing twice. A failure of one job fails that
job alone, and jobs redelivered after a worker died holding them run one at a time
(`worker.isolation`).

A service that goes away (Postgres, Kafka, S3: `TRANSIENT`) at any step of the loop
never ends the process: the worker reports not ready, gives back the jobs it holds
(their attempts taken back: an outage is no attempt), rewinds to the committed
offsets, sends the dead-letter copies it still owes, and goes on once all of that
worked, waiting longer between tries (at most 30 s) for as long as the outage lasts.
"""

from __future__ import annotations

import gc
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any

from sqlalchemy import Engine

from inferfleet.clients.broker import Record
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.clients.topics import dlq_topic, ensure_topics, model_topics
from inferfleet.errors import InferfleetError
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import Settings
from worker import isolation, persist, traces
from worker.batching import Outcome, group_by_version, settle
from worker.consume import JobConsumer
from worker.health import Readiness
from worker.inference import run_jobs
from worker.isolation import TRANSIENT
from worker.metrics import WorkerMetrics
from worker.modelstore import ModelStore
from worker.observe import BatchLog, BatchObserver
from worker.payloads import Payloads
from worker.pipeline import Pipeline
from worker.plan import Plan, Version, claimable, plan_batch
from worker.requeue import dead_letters, put_back, resend
from worker.served import ServedModels
from worker.summary import BatchSummary, Handled, summarise
from worker.units import Unit, make_unit

log = logging.getLogger(__name__)

# What keeps a model from loading: the above, or a bad artifact or registry entry.
LOAD_FAILURES: tuple[type[Exception], ...] = (*TRANSIENT, InferfleetError, OSError)
# How long a poll of nothing but jobs waiting for their versions pauses the loop.
WAITING_PAUSE_S = 0.2


class Worker:
    """One consumer-group member serving `settings.worker_models`."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: ModelStore,
        metrics: WorkerMetrics,
        readiness: Readiness,
        consumer_factory: Callable[[Settings, Sequence[str]], JobConsumer] = JobConsumer,
        s3: Any = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        # Inputs named by `input_uri` and large outputs; a client of its own when not given.
        self.payloads = Payloads(settings, engine, s3 or make_s3_client(settings))
        self.metrics = metrics
        # Told of each step of each batch: logs and metrics unless given another.
        self.observer = observer or BatchLog(metrics)
        self.readiness = readiness
        self._consumer_factory = consumer_factory
        self._consumer: JobConsumer | None = None
        self._stop = threading.Event()
        # The served versions: loaded, watched for moved aliases, told on /readyz.
        self.models = ServedModels(settings, store, metrics, readiness, lambda: self._away)
        # Written with `running` by every claim of this worker, and named by every later
        # write of those jobs (`worker.persist`): one per worker, never reused.
        self.claim_token = uuid.uuid4().hex
        # The pipeline runs a unit on each lane's execution thread at once: what follows
        # is kept per thread, or under a lock.
        # Jobs each execution thread took in the unit in hand (by thread): given back if
        # an outage fails it.
        self._held: dict[int, set[str]] = {}
        # Dead-letter copies of jobs already failed in Postgres that Kafka has not
        # acknowledged yet: sent again before the next batch (their jobs, being
        # terminal, will not fail again to make them anew).
        self._owed: list[Record] = []
        self._owed_lock = threading.Lock()
        # Why the loop is waiting for a service to come back; None while it is not.
        self._away: str | None = None
        # Each thread's batch in hand: where its retries and dead letters go, its records.
        self._local = threading.local()
        self._pipeline: Pipeline | None = None

    def stop(self) -> None:
        """Ask the loop to finish the batches handed off, commit, leave the group and return."""
        self._stop.set()

    def start(self) -> bool:
        """Load and warm every served model, then join the group; False if stopped first.

        Until every served model is warm, `/readyz` says why not and the worker stays
        out of the consumer group, so no partition waits on a worker that cannot serve.
        """
        if not self._until_done(self.models.load, LOAD_FAILURES, "cannot load served models"):
            return False
        topics = [t for name in self.settings.worker_models for t in model_topics(name)]

        def join() -> None:
            ensure_topics(
                self.settings,
                topics + [dlq_topic(t) for t in topics],
                self.settings.topic_partitions,
                self.settings.topic_replication,
            )
            self._consumer = self._consumer_factory(self.settings, topics)

        if not self._until_done(join, TRANSIENT, "cannot join the consumer group"):
            return False
        # What is loaded by now (modules, models, clients) lives as long as the process:
        # frozen out of the collector's reach, so that the full collections a batch's
        # records set off scan only what the batches made. They scanned everything,
        # stopping every thread for 100-300 ms each, every few seconds of a batch.
        gc.collect()
        gc.freeze()
        self.models.ready()
        log.info("ready; consuming %s as group %s", ", ".join(topics), self.settings.worker_group)
        return True

    def _until_done(
        self, step: Callable[[], None], failures: tuple[type[Exception], ...], what: str
    ) -> bool:
        """Run `step` until it raises none of `failures` (True) or the worker is stopped
        (False), waiting 1 s, 2 s, … up to 30 s between tries; not ready meanwhile."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                step()
                return True
            except failures as e:
                log.error("%s, retrying in %.0f s: %s", what, delay, e)
                self.models.report(f"{what}: {e}")
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def run(self) -> None:
        """Handle batches until stopped; then finish those handed off, commit them and
        leave the group."""
        if not self.start():
            return
        consumer = self._consumer
        assert consumer is not None
        pipeline = Pipeline(
            consumer,
            lambda unit: self.execute(unit, consumer),
            self.settings.worker_handoff_depth,
            self.metrics.handoff_batches,
        )
        self._pipeline = pipeline
        delay = 1.0
        rewind = False
        try:
            while not self._stop.is_set():
                try:
                    if rewind:
                        pipeline.quiesce()
                        self.rewind(consumer)
                        pipeline.resume()
                        rewind = False
                    self.models.watch()
                    self.advance()
                    if self._away is not None:
                        log.info("the services are back; going on")
                        self._away = None
                        self.models.report(None)
                    delay = 1.0
                except TRANSIENT as e:
                    # Postgres, Kafka or S3 is away: nothing of this batch was committed, so
                    # give its jobs back, rewind to the committed offsets and try the same
                    # records again; whatever of that fails is tried again after the wait.
                    log.error("batch failed, rewinding and retrying in %.0f s: %r", delay, e)
                    rewind = True
                    self._away = f"waiting for a service: {type(e).__name__}: {e}"
                    self.models.report(None)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self._leave(pipeline, consumer)

    def advance(self) -> None:
        """One step of the pipeline's consumer side (`Pipeline.advance`)."""
        assert self._pipeline is not None
        self._pipeline.advance()

    def _leave(self, pipeline: Pipeline, consumer: JobConsumer) -> None:
        """Finish and commit what was handed off, then leave the group."""
        try:
            pipeline.drain()
        except TRANSIENT as e:
            log.warning("stopping without committing the last batches (redelivered): %r", e)
        finally:
            pipeline.close()
            consumer.close()
            log.info("left the consumer group; stopped")

    def rewind(self, consumer: JobConsumer) -> None:
        """After an outage failed a batch: give back the jobs it held, move back to the
        committed offsets, and send the dead-letter copies still owed.

        Raises TRANSIENT while a service is still away; calling it again is harmless.
        """
        held: set[str] = set().union(*self._held.values())
        given = persist.release(self.engine, held, token=self.claim_token)
        if given:
            log.info("gave back %d job(s) of the failed batch; no attempt counted", given)
        self._held.clear()
        consumer.rewind()
        with self._owed_lock:
            consumer.send(self._owed)
            self._owed = []

    def handle_batch(self, consumer: JobConsumer) -> BatchSummary | None:
        """Poll once and see every polled record to a committed end, without the
        pipeline: poll → plan → run → persist → commit."""
        records = consumer.poll()
        if not records:
            return None
        summary = self.execute(make_unit(records), consumer)
        consumer.commit()
        return summary

    def execute(self, unit: Unit, consumer: JobConsumer) -> BatchSummary:
        """Claim, run and write one unit, sending its put-backs, retries and dead letters
        through `consumer` (its producer only); committing is the caller's."""
        with traces.batch(unit.records):
            return self._handle(consumer, unit)

    def _handle(self, consumer: JobConsumer, unit: Unit) -> BatchSummary:
        records = unit.records
        self.observer.batch_started(records)
        self._local.batch = (consumer, records)
        with traces.step("claim"):
            plan = self.plan(unit)
        consumer.send(put_back(records, plan.put_back))
        if plan.only_waiting:
            self._stop.wait(WAITING_PAUSE_S)  # nothing else to do: let the load get on
        with traces.step("inference"):
            final, retry = self.run_taken(plan.run, plan.attempts)
        with traces.step("persist"):
            written = self.record(plan.run, final, retry)  # outcomes, retries, dead letters
        consumer.send(dead_letters(plan.dead_letter))
        # Redelivered jobs: each taken, run and persisted alone, in turn.
        alone, alone_retry = isolation.run_alone(
            plan.alone, plan.redelivered, self.settings.max_attempts, self
        )
        self._hold(())
        handled = Handled(len(records), plan, final + alone, len(retry) + len(alone_retry), written)
        summary = summarise(handled)
        self.observer.batch_done(handled, summary)
        return summary

    def plan(self, unit: Unit) -> Plan:
        """Claim the unit's decoded jobs; what becomes of each (`plan_batch`).

        A job naming a version not loaded yet is not claimed (no attempt counted): it is
        put back at the end of its topic while its version loads in the background, so
        the poll loop never waits for a load.
        """
        jobs, poison = unit.jobs, unit.poison
        waiting = self._waiting_versions(jobs)
        unfinished = persist.unfinished(
            self.engine, [j.job_id for j in jobs if (j.model, j.version) in waiting]
        )
        offered = [j.job_id for j in claimable(jobs, waiting)]
        # Held from before the claim is sent: should its answer be lost to an outage, the
        # give-back still finds whichever of them it took (it checks the token).
        self._hold(offered)
        claim = persist.claim(
            self.engine,
            offered,
            token=self.claim_token,
            retry_window_s=self.settings.webhook_retry_window_s,
        )
        self._hold(claim.taken)
        plan = plan_batch(jobs, poison, waiting, unfinished, claim)
        self.observer.planned(plan)
        return plan

    def _waiting_versions(self, jobs: Sequence[JobMessage]) -> Set[Version]:
        """The versions the jobs name that are not loaded yet (a version that failed to
        load is not waiting: its jobs run and fail naming it)."""
        versions = {(j.model, j.version) for j in jobs}
        return {key for key in versions if self.store.state(*key) in ("loading", "waiting")}

    def run_taken(
        self, jobs: Sequence[JobMessage], attempts: Mapping[str, int]
    ) -> tuple[list[Outcome], list[str]]:
        """Fetch, run and encode taken jobs; (final outcomes, IDs to try again).

        Each stage fails only the jobs it cannot handle; should anything else raise, the
        jobs are bisected so only those that raise fail (`isolation.guarded`). Raises
        only TRANSIENT: a service every job needs is away.
        """
        outcomes = isolation.guarded(jobs, self._outcomes, "worker_error", "running the job")
        return settle(outcomes, attempts, self.settings.max_attempts)

    def _outcomes(self, jobs: Sequence[JobMessage]) -> list[Outcome]:
        ready, outcomes = self.payloads.fetch_inputs(jobs)
        for group in group_by_version(ready):
            outcomes.extend(self._run_group(group.model, group.version, group.jobs))
        return self.payloads.store_outputs(outcomes, jobs)

    def take_alone(self, job_id: str, counted: bool = True) -> int | None:
        """Take one redelivered job to run alone (`isolation.Runner`)."""
        self._held.setdefault(threading.get_ident(), set()).add(job_id)  # as in `plan`
        return persist.take_alone(self.engine, job_id, token=self.claim_token, counted=counted)

    def record(self, jobs: Sequence[JobMessage], final: list[Outcome], retry: list[str]) -> int:
        """Write outcomes, then put retries and dead letters on Kafka; how many were written.

        Both happen before the offsets move past the batch. Only jobs this worker still
        holds are written, and only those are retried or dead-lettered: a job another
        claim took meanwhile is that claim's to finish. A retry Kafka does not take is
        redelivered by the rewind instead; a dead-letter copy is owed until it is sent.
        """
        written = persist.finish(
            self.engine,
            final,
            requeued=retry,
            token=self.claim_token,
            retry_window_s=self.settings.webhook_retry_window_s,
        )
        lost = len(final) + len(retry) - len(written.finished) - len(written.requeued)
        if lost:
            log.warning(
                "%d job(s) no longer held by this worker (another claim took them, or they "
                "were cancelled): not written, retried or dead-lettered",
                lost,
            )
        consumer, records = self._local.batch
        retries, copies = resend(
            records,
            jobs,
            [o for o in final if o.job_id in written.finished],
            [i for i in retry if i in written.requeued],
        )
        with self._owed_lock:
            self._owed.extend(copies)
            consumer.send(retries + self._owed)
            self._owed = []
        return len(written.finished)

    def _hold(self, job_ids: Iterable[str]) -> None:
        """The jobs the calling execution thread holds from now on (`rewind` gives back
        those of every thread)."""
        self._held[threading.get_ident()] = set(job_ids)

    def _run_group(self, name: str, version: int, jobs: list[JobMessage]) -> list[Outcome]:
        try:
            model = self.store.get(name, version)
        except TRANSIENT:
            raise
        except Exception as e:  # noqa: BLE001 - a version that cannot load fails its jobs
            self.observer.version_unavailable(name, version, e)
            message = f"{name} v{version} cannot be loaded: {e}"
            error = {"type": "model_unavailable", "message": message}
            # Not in the registry, or a bad artifact: no retry will help.
            final = isinstance(e, InferfleetError)
            return [Outcome(j.job_id, error=error, retriable=not final) for j in jobs]
        with self.observer.inference(name, version):
            outcomes = run_jobs(model, jobs)
        by_id = {j.job_id: j for j in jobs}
        for o in outcomes:
            if o.error is not None:
                self.observer.job_failed(by_id[o.job_id], o.error)
        return outcomes
