"""How fast the outbox may speak: to everyone together, and to any one chat.

Pure bookkeeping over times the caller passes in (``time.monotonic()`` in the sender), so the
rules can be tested without a clock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class SendWindow:
    """At most ``capacity`` sends in any ``period``, each send holding its slot from when it
    starts until ``period`` after its answer arrived.

    Counting to the answer, not the start, is what makes this safe against a server that counts
    arrivals in a strict sliding second: a request arrives somewhere between our start and its
    answer, so however the latency varies no server window can see more than ``capacity``. The
    price is latency/period of the rate (about 0.5 % at a local server's 5 ms), against a 429
    and a whole ``retry_after`` of silence for each overshoot.
    """

    def __init__(self, rate: float, period: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.capacity = max(1, math.floor(rate * period))
        self.period = self.capacity / rate
        self.in_flight = 0
        self._frees: list[float] = []  # heap: when each answered send's slot frees

    def _prune(self, now: float) -> None:
        while self._frees and self._frees[0] <= now:
            heapq.heappop(self._frees)

    def next_free(self, now: float) -> float:
        """``now`` if a send may start now, else the earliest time one may (inf: wait for an
        answer)."""
        self._prune(now)
        if self.in_flight + len(self._frees) < self.capacity:
            return now
        return self._frees[0] if self._frees else math.inf

    def start(self) -> None:
        self.in_flight += 1

    def finish(self, answered_at: float) -> None:
        self.in_flight -= 1
        heapq.heappush(self._frees, answered_at + self.period)


class _Lane(Generic[T]):
    __slots__ = ("busy", "ready_at", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.ready_at = 0.0
        self.waiting: deque[T] = deque()


class ChatLanes(Generic[T]):
    """One send at a time per chat, the next no sooner than ``1/rate`` after the last answer.

    Items for a chat that is busy or resting wait here in arrival order; ``due`` hands them out
    as their chats become free. An item handed out keeps its chat busy until ``finish``.
    """

    def __init__(self, rate_per_chat: float) -> None:
        if rate_per_chat <= 0:
            raise ValueError("rate_per_chat must be positive")
        self.gap = 1.0 / rate_per_chat
        self._lanes: dict[tuple[str, str], _Lane[T]] = {}
        # heap of (ready_at, chat) with waiting items
        self._timers: list[tuple[float, tuple[str, str]]] = []
        self.parked = 0
        self._prune_at = 1024

    def offer(self, chat: tuple[str, str], item: T, now: float) -> bool:
        """True if ``item`` may be sent now (its chat is now busy); False if it was parked."""
        lane = self._lanes.get(chat)
        if lane is None:
            lane = self._lanes[chat] = _Lane()
        if not lane.busy and not lane.waiting and lane.ready_at <= now:
            lane.busy = True
            return True
        lane.waiting.append(item)
        self.parked += 1
        if not lane.busy and len(lane.waiting) == 1:
            heapq.heappush(self._timers, (lane.ready_at, chat))
        return False

    def finish(self, chat: tuple[str, str], answered_at: float) -> None:
        """The chat's send is over (whatever its outcome); its next item may follow later."""
        lane = self._lanes.get(chat)
        if lane is None:
            return
        lane.busy = False
        lane.ready_at = answered_at + self.gap
        if lane.waiting:
            heapq.heappush(self._timers, (lane.ready_at, chat))
        elif len(self._lanes) > self._prune_at:
            self._prune(answered_at)

    def due(self, now: float) -> list[T]:
        """Items whose chats have become free; each one's chat is busy again."""
        out: list[T] = []
        while self._timers and self._timers[0][0] <= now:
            _at, chat = heapq.heappop(self._timers)
            lane = self._lanes.get(chat)
            if lane is None or lane.busy or not lane.waiting:
                continue  # a stale timer
            if lane.ready_at > now:
                heapq.heappush(self._timers, (lane.ready_at, chat))
                continue
            lane.busy = True
            out.append(lane.waiting.popleft())
            self.parked -= 1
        return out

    def next_due(self) -> float:
        return self._timers[0][0] if self._timers else math.inf

    def drop(self, chat: tuple[str, str]) -> list[T]:
        """Everything waiting for this chat, taken out (the chat blocked the bot)."""
        lane = self._lanes.get(chat)
        if lane is None or not lane.waiting:
            return []
        items = list(lane.waiting)
        lane.waiting.clear()
        self.parked -= len(items)
        return items

    def drain(self) -> list[T]:
        """Everything waiting, taken out (the sender is stopping)."""
        items = [item for lane in self._lanes.values() for item in lane.waiting]
        self._lanes.clear()
        self._timers.clear()
        self.parked = 0
        return items

    def _prune(self, now: float) -> None:
        self._lanes = {
            chat: lane
            for chat, lane in self._lanes.items()
            if lane.busy or lane.waiting or lane.ready_at > now
        }
        self._prune_at = max(1024, 2 * len(self._lanes))
