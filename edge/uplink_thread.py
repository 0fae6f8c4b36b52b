"""Runs the uplink's asyncio loop in a background thread beside the pipeline's."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from edge.errors import UplinkRejected
from edge.uplink import Uplink

logger = logging.getLogger(__name__)


class UplinkThread:
    """Runs an :class:`Uplink` on its own event loop in a background thread."""

    def __init__(self, uplink: Uplink, on_fatal: Callable[[BaseException], None] | None = None):
        self.uplink = uplink
        self.on_fatal = on_fatal
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="uplink", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5.0)

    def _main(self) -> None:
        async def main() -> None:
            task = asyncio.ensure_future(self.uplink.run())
            await asyncio.sleep(0)
            self._started.set()
            await task

        try:
            asyncio.run(main())
        except UplinkRejected as exc:
            self.error = exc
            logger.error("uplink stopped: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
        except Exception as exc:  # a bug: report it, never die silently
            self.error = exc
            logger.exception("uplink crashed")
            if self.on_fatal is not None:
                self.on_fatal(exc)
        finally:
            self._started.set()

    def stop(self, drain_s: float = 0.0, interrupt: threading.Event | None = None) -> None:
        """Stop (after draining the spool for at most ``drain_s``; at once when ``interrupt``
        gets set meanwhile) and wait for the thread."""
        self.uplink.request_stop(drain_s)
        deadline = time.monotonic() + drain_s + 15.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            if interrupt is not None and interrupt.is_set() and drain_s > 0:
                self.uplink.request_stop(0.0)
                drain_s = 0.0
            self._thread.join(timeout=0.1)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
