"""The reconnect schedule of the uplink and of live camera streams: exponential, capped, jittered.

The pauses come from tenacity's wait strategies, combined as "equal jitter" (Brooker, "Exponential
Backoff And Jitter", AWS Architecture Blog, 2015): after the n-th failure in a row the pause is
uniform in [d/2, d], d = min(max_s, initial_s * 2**(n-1)). Half the pause is fixed, so the
attempt rate is bounded whatever wakes the caller; the other half is random, so a fleet that
lost the same cloud does not come back in lock-step.

Only the schedule lives here: callers sleep on their own stop signal (an asyncio event, a
threading event), so that a stop request and nothing else cuts a pause short.
"""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random_exponential


class Backoff:
    """Pauses between attempts (s): :meth:`next_pause` after each failure, :meth:`reset` after a
    success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        if initial_s <= 0:
            raise ValueError(f"initial_s must be positive, got {initial_s}")
        max_s = max(max_s, initial_s)
        self.initial_s = initial_s
        self.max_s = max_s
        half, half_max = initial_s / 2, max_s / 2
        self._wait = wait_exponential(multiplier=half, max=half_max) + wait_random_exponential(
            multiplier=half, max=half_max
        )
        self._state = RetryCallState(Retrying(), None, (), {})
        self.failures = 0  # failures in a row

    def next_pause(self) -> float:
        """Count one more failure; the seconds to wait before the next attempt."""
        self.failures += 1
        self._state.attempt_number = self.failures
        return float(self._wait(self._state))

    def reset(self) -> None:
        """An attempt succeeded: the next failure starts the schedule again at ``initial_s``."""
        self.failures = 0
