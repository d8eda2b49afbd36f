"""Group commit: many threads' small requests sent as one batch, with no added wait.

A thread that finds no batch in flight sends its request at once, alone. Requests arriving while
a batch is in flight queue up and go together, as the next batch, as soon as it returns; the
thread that sent a batch hands the sending of the next to the first of those waiting. An idle
system therefore pays nothing, and a busy one pays one round trip for many requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")

# A batch runner answers each request with a result, or with the exception to raise to its sender.
BatchRunner = Callable[[Sequence[Request]], Sequence["Result | BaseException"]]


class _Slot(Generic[Request, Result]):
    __slots__ = ("done", "error", "request", "result", "wake")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.wake = threading.Event()
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Request, Result]):
    def __init__(self, run_batch: BatchRunner[Request, Result], *, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[Request, Result]] = []
        self._sending = False

    def submit(self, request: Request) -> Result:
        """The result for `request`, sent alone or with others; raises what its runner said."""
        slot: _Slot[Request, Result] = _Slot(request)
        with self._lock:
            self._queue.append(slot)
            lead = not self._sending
            self._sending = True
        if not lead:
            slot.wake.wait()
        if not slot.done:  # first in the queue: our own request goes in this batch
            self._send_one_batch()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _send_one_batch(self) -> None:
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            answers: Sequence[Result | BaseException] = self._run_batch(
                [slot.request for slot in batch]
            )
            if len(answers) != len(batch):
                raise RuntimeError(f"batch runner answered {len(answers)} of {len(batch)}")
        except BaseException as exc:  # the whole batch failed: every sender hears why
            answers = [exc] * len(batch)
        for slot, answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                slot.error = answer
            else:
                slot.result = answer
            slot.done = True
        with self._lock:
            if self._queue:
                self._queue[0].wake.set()  # woken while not done: it sends the next batch
            else:
                self._sending = False
        for slot in batch:
            slot.wake.set()
