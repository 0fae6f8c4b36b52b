"""The describer service: a scheduler tick and ``concurrency`` workers on the event loop.

Each worker claims a job (:mod:`cloud.describe.jobs`), builds its window's context, fetches
the rebuilt crops of the chosen detections from the :class:`~cloud.describe.base.CropSource`
(none configured, or it fails: the LLM gets metadata only), asks the describer, and stores
the description and the job's completion in one transaction. A job that fails (an LLM that
never gave a valid reply, a window that cannot be read) is recorded with its error and
retried later, or ``failed`` after ``job_max_attempts``; the loops never stop on an error
(``Exception`` is caught at the top of each, logged); cancellation stops them and puts the
jobs in progress back in the queue. Blocking database work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from cloud.describe.base import RULES, CropSource, Describer
from cloud.describe.config import DescriberConfig
from cloud.describe.context import ContextSettings, Window, build_context
from cloud.describe.errors import DescribeError
from cloud.describe.jobs import Job, JobQueue, JobState
from cloud.describe.metrics import DescriberMetrics
from cloud.describe.rules import RulesDescriber
from cloud.describe.scheduler import Scheduler
from cloud.describe.store import insert_description

logger = logging.getLogger(__name__)

KIND = "describe"


def _now_us() -> int:
    return time.time_ns() // 1000


def build_describer(config: DescriberConfig, metrics: DescriberMetrics) -> Describer:
    """The LLM describer when an endpoint is configured, else the rules."""
    if config.uses_llm:
        from cloud.describe.llm import LlmDescriber

        return LlmDescriber(config, metrics)
    return RulesDescriber()


def window_of(payload: dict[str, Any]) -> Window:
    """The window a job's payload names; :class:`DescribeError` for a payload that does not."""
    try:
        window = Window(
            camera_id=int(payload["camera_id"]),
            from_us=int(payload["from_us"]),
            to_us=int(payload["to_us"]),
            reason=str(payload.get("reason", "window")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DescribeError(f"job payload is not a window: {exc!r}") from None
    if window.to_us <= window.from_us:
        raise DescribeError(f"empty window {window.from_us}..{window.to_us}")
    return window


class DescribeWorker:
    """Schedules and runs describer jobs while :meth:`run` runs (a task of the app)."""

    def __init__(
        self,
        engine: Engine,
        config: DescriberConfig,
        describer: Describer,
        metrics: DescriberMetrics,
        crops: CropSource | None = None,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self.engine = engine
        self.config = config
        self.describer = describer
        self.metrics = metrics
        self.crops = crops
        """Rebuilt crops for the LLM; may be set after construction (the decoder)."""
        self.clock_us = clock_us
        self.queue = JobQueue(
            engine, KIND, config.job_max_attempts, config.job_retry_s, clock_us=clock_us
        )
        self.scheduler = Scheduler(engine, self.queue, config, metrics, clock_us)
        self.settings = ContextSettings(
            max_detections=config.max_detections,
            max_images=config.max_images,
            stopped_after_s=config.stopped_after_s,
            stopped_max_move=config.stopped_max_move,
        )
        self._wake = asyncio.Event()

    @classmethod
    def build(
        cls,
        config: DescriberConfig,
        engine: Engine,
        registry: CollectorRegistry,
        crops: CropSource | None = None,
    ) -> DescribeWorker:
        metrics = DescriberMetrics(registry)
        return cls(engine, config, build_describer(config, metrics), metrics, crops)

    @property
    def describer_label(self) -> str:
        return RULES if self.describer.name == RULES else "llm"

    async def aclose(self) -> None:
        await self.describer.aclose()

    # ---------------------------------------------------------------- loops

    async def run(self) -> None:
        """Scheduler and workers until cancelled."""
        # SQLite: one process owns the catalog, so anything `running` at start is orphaned.
        lease = 0.0 if self.engine.dialect.name == "sqlite" else self.config.job_lease_s
        await asyncio.to_thread(self.queue.recover, lease)
        workers = [
            asyncio.create_task(self._work(), name=f"describer-{i}")
            for i in range(self.config.concurrency)
        ]
        try:
            while True:
                try:
                    if await asyncio.to_thread(self.scheduler.tick):
                        self._wake.set()
                    await asyncio.to_thread(self.queue.recover, self.config.job_lease_s)
                except Exception:
                    logger.exception("describer scheduler tick failed; next in %.0f s",
                                     self.config.poll_s)  # fmt: skip
                await asyncio.sleep(self.config.poll_s)
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _work(self) -> None:
        while True:
            try:
                job = await asyncio.to_thread(self.queue.claim)
                if job is None:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.config.poll_s)
                    continue
                await self.run_job(job)
            except Exception:
                logger.exception("describer worker error; continuing in %.0f s",
                                 self.config.poll_s)  # fmt: skip
                await asyncio.sleep(self.config.poll_s)

    async def drain(self, final: bool = True) -> int:
        """Schedule (closing every window with data when ``final``) and run every due job
        now, one at a time; returns the jobs run. For the demo, tests and shutdown."""
        await asyncio.to_thread(self.scheduler.tick, final)
        ran = 0
        while (job := await asyncio.to_thread(self.queue.claim)) is not None:
            await self.run_job(job)
            ran += 1
        return ran

    # ---------------------------------------------------------------- one job

    async def run_job(self, job: Job) -> JobState:
        """Describe the job's window and store it; a failure is recorded on the job."""
        try:
            window = window_of(job.payload)
            context = await asyncio.to_thread(build_context, self.engine, window, self.settings)
            images = await self._images(context.image_ids)
            described = await self.describer.describe(context, images)
        except asyncio.CancelledError:
            self._release(job)
            raise
        except Exception as exc:
            if isinstance(exc, DescribeError):
                logger.warning("describer job %d (run %d) failed: %s", job.id, job.attempts, exc)
            else:  # a bug, or the database: keep the traceback
                logger.exception("describer job %d (run %d) failed", job.id, job.attempts)
            error = f"{type(exc).__name__}: {exc}"
            state = await asyncio.to_thread(self.queue.fail, job, error)
            outcome = "failed" if state is JobState.FAILED else "retry"
            self.metrics.jobs.labels(outcome, self.describer_label).inc()
            return state
        created = self.clock_us()
        await asyncio.to_thread(
            self.queue.complete,
            job,
            lambda conn: insert_description(conn, window, described, created),
        )
        self.metrics.jobs.labels("done", self.describer_label).inc()
        logger.info(
            "described camera %d %d..%d (%s): %s",
            window.camera_id, window.from_us, window.to_us, described.describer,
            described.output.congestion.value,
        )  # fmt: skip
        return JobState.DONE

    async def _images(self, ids: tuple[int, ...]) -> dict[int, bytes]:
        if self.crops is None or not self.describer.wants_images or not ids:
            return {}
        try:
            return await self.crops.png_for(ids)
        except Exception as exc:  # the decoder is optional: describe from metadata
            logger.warning("rebuilt crops unavailable (%s); describing from metadata only", exc)
            return {}

    def _release(self, job: Job) -> None:
        try:
            self.queue.release(job)
        except Exception:
            logger.exception("could not put describer job %d back; it is requeued at start",
                             job.id)  # fmt: skip
