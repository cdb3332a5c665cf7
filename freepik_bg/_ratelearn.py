"""Learning a server's POST rate limit from its 429s, for batches run with ``rate=None``.

Without a known limit, a batch sends as fast as its concurrency allows and
pauses on each 429. Against a token bucket that alone is not enough: after each
pause the server's bucket is full again and every waiting task fires at once,
so a share of every burst is answered 429 again.

`RateLearner` turns the 429 pattern into a pace. At a 429 it estimates the rate
the server accepted: the POSTs sent since the last 429 (or the start) that were
not throttled, over the time from then to the end of the pause the server asked
for. That span counts the pause because the server said so: sending at that
rate over the same span would have been accepted.

A cut is a hypothesis, not a conclusion. 429s that do not come from a rate
limit (a flaky proxy, an overloaded backend, a test's injected faults) arrive
at the same share of POSTs whatever the pace; a real limit's 429s stop once the
pace is under it. So each cut starts a *trial* over the next POSTs: when no
429 comes, the cut is kept; when the 429 share fell sharply but not to zero
the limit is lower still, and the rate is cut again from the trial's own
numbers; when it did not fall, the cut is undone and the learner is slower to
cut again (it lets more 429s pass before the next trial, and estimates over
the longer span). A kept rate creeps up, so a limit raised later is found.
"""

from __future__ import annotations

import math

__all__ = ["RateLearner"]

#: A trial lasts long enough to expect this many 429s if the cut changed nothing.
_TRIAL_429S = 8
_MIN_TRIAL = 64
_MAX_TRIAL = 1024
#: The 429 share in a trial must fall at least this much to count as "helped".
_FELL = 0.25
#: A 429 in a trial cuts again only if the server took less than this share of the pace.
_LOWER = 0.8
#: After the n-th undone cut in a row, this ** n - 1 429 episodes pass before the next trial.
_DOUBT_BASE = 4
#: No estimate from fewer POSTs than this: the window goes on.
_MIN_WINDOW = 16
#: Growth per second of a kept rate (compounded), to find a raised limit.
_GROWTH = 0.02
#: Never learn a pace below this (POSTs per second).
_FLOOR = 0.05


class _Trial:
    """The POSTs after a cut (does the 429 share fall?) and the window before it."""

    __slots__ = ("before_sent", "before_start", "before_throttled", "prior", "sent", "throttled")

    def __init__(self, prior: float | None, start: float, sent: int, throttled: int) -> None:
        self.prior = prior  # the rate to go back to if the cut does not help
        self.before_start = start
        self.before_sent = sent
        self.before_throttled = throttled
        self.sent = 0  # after the pause that began the trial
        self.throttled = 0

    @property
    def before(self) -> float:
        return self.before_throttled / max(1, self.before_sent)

    @property
    def length(self) -> int:
        wanted = math.ceil(_TRIAL_429S / max(self.before, 1e-9))
        return min(_MAX_TRIAL, max(_MIN_TRIAL, wanted))

    def estimate(self, end: float) -> float:
        """What the server accepted over the window before the cut, up to ``end``."""
        return _accepted(self.before_sent, self.before_throttled, end - self.before_start)


def _accepted(sent: int, throttled: int, span: float) -> float:
    return max(_FLOOR, max(0, sent - throttled) / max(span, 1e-3))


class RateLearner:
    """A server's rate limit, learned from when POSTs are sent and when they get 429s.

    Call `sent` when a POST goes out and `throttled` when one is answered 429
    (with the pause the batch takes for it); read `rate` for the pace to keep
    (``None``: none learned, send freely). Time is passed in, so that any clock
    works (anyio's, or a monotonic one shared by threads).

    Examples:
        >>> learner = RateLearner()
        >>> for i in range(32):
        ...     learner.sent(0.0)
        >>> for i in range(12):  # 20 got through; the server asks for a 1 s pause
        ...     learner.throttled(0.01, 1.0)
        >>> round(learner.rate, 1)
        19.8
    """

    __slots__ = (
        "_doubt",
        "_episode_end",
        "_grown_at",
        "_sent",
        "_skip",
        "_start",
        "_throttled",
        "_trial",
        "rate",
    )

    def __init__(self) -> None:
        self.rate: float | None = None
        self._start: float | None = None  # of the current window
        self._sent = 0  # in the current window
        self._throttled = 0
        self._episode_end = -math.inf  # 429s before it answer POSTs sent before the cut
        self._trial: _Trial | None = None
        self._doubt = 0  # cuts undone in a row
        self._skip = 0  # 429 episodes to let pass before the next trial
        self._grown_at = 0.0

    def sent(self, now: float) -> None:
        """A POST is being sent now."""
        if self._start is None:
            self._start = now
        self._sent += 1
        trial = self._trial
        if trial is None:
            self._grow(now)
        elif now >= self._episode_end:
            trial.sent += 1
            if trial.sent >= trial.length:
                # No 429 since the pace was cut: it was a limit, and the pace is under it.
                self._trial = None
                self._doubt = 0
                self._grown_at = now

    def throttled(self, now: float, wait: float) -> None:
        """A POST was answered 429; the batch pauses ``wait`` seconds from ``now``."""
        end = now + max(0.0, wait)
        trial = self._trial
        if now < self._episode_end:
            # The answer to a POST sent before this episode's decision: it says nothing
            # about the new pace, only that the burst before it was larger.
            self._episode_end = max(self._episode_end, end)
            if trial is None:
                self._throttled += 1  # a doubtful episode: the window goes on
                return
            trial.before_throttled += 1
            self.rate = min(trial.estimate(self._episode_end), self.rate or math.inf)
            self._start = self._episode_end
            return
        self._throttled += 1
        start = self._start if self._start is not None else now
        estimate = _accepted(self._sent, self._throttled, end - start)
        if trial is not None:
            trial.throttled += 1
            share = trial.throttled / max(1, trial.sent)
            lower = self.rate is not None and estimate < self.rate * _LOWER
            if share > trial.before * _FELL or not lower:
                # The share of 429s did not fall with the pace, or the server took about
                # all we sent at it: not a rate limit.
                self.rate = trial.prior
                self._trial = None
                self._doubt += 1
                self._skip = _DOUBT_BASE**self._doubt - 1
            else:
                # Fewer 429s, but some: the limit is lower still.
                self.rate = estimate
                self._trial = _Trial(trial.prior, start, trial.sent, trial.throttled)
        elif self._skip > 0 or self._sent < _MIN_WINDOW:
            # Doubtful: let this one pass and keep measuring over the longer span.
            self._skip = max(0, self._skip - 1)
            self._episode_end = end
            return
        else:
            self._trial = _Trial(self.rate, start, self._sent, self._throttled)
            self.rate = estimate if self.rate is None else min(self.rate, estimate)
        self._episode_end = end
        self._start = end
        self._sent = 0
        self._throttled = 0

    def _grow(self, now: float) -> None:
        if self.rate is not None:
            self.rate *= 1.0 + _GROWTH * max(0.0, now - self._grown_at)
        self._grown_at = now
