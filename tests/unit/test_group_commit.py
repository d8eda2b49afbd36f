"""GroupCommit: requests of many threads sent together, each sender getting its own answer.

The batch runners here are controlled by events, not sleeps: the first batch is held open until
the test has queued the requests it wants behind it, so that the batches formed are known.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from services.store.group_commit import GroupCommit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(30)

JOIN_S = 5.0


class Sender(threading.Thread):
    """One thread calling `submit(request)` once; keeps what it got back or what it raised."""

    def __init__(self, group: GroupCommit[Any, Any], request: Any) -> None:
        super().__init__(name=f"sender-{request}", daemon=True)
        self.group = group
        self.request = request
        self.result: Any = None
        self.error: BaseException | None = None
        self.returned = False

    def run(self) -> None:
        try:
            self.result = self.group.submit(self.request)
            self.returned = True
        except BaseException as exc:
            self.error = exc


class HeldRunner:
    """A batch runner that records every batch; the first batch waits until `release` is set
    (`entered` says it has started). Answers come from `answer(request)`."""

    def __init__(self, answer: Callable[[Any], Any] = lambda r: f"done:{r}") -> None:
        self.answer = answer
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, requests: Sequence[Any]) -> list[Any]:
        with self._lock:
            self.batches.append(list(requests))
            first = len(self.batches) == 1
        if first:
            self.entered.set()
            assert self.release.wait(JOIN_S), "the test never released the first batch"
        return [self.answer(r) for r in requests]


def queued(group: GroupCommit[Any, Any]) -> int:
    """Requests waiting behind the batch in flight (white box: the only way to know that a
    thread has reached the queue rather than merely started)."""
    with group._lock:
        return len(group._queue)


def has_queued(group: GroupCommit[Any, Any], n: int) -> bool:
    return queued(group) == n


def start_behind_held_batch(
    group: GroupCommit[Any, Any], entered: threading.Event, requests: Sequence[Any]
) -> tuple[Sender, list[Sender]]:
    """A leader whose batch (its request alone) is held open, and `requests` queued behind it,
    each one queued before the next is started (so their order in the queue is known)."""
    leader = Sender(group, "leader")
    leader.start()
    assert entered.wait(JOIN_S), "the leader's batch never started"
    followers = []
    for i, request in enumerate(requests, start=1):
        sender = Sender(group, request)
        sender.start()
        followers.append(sender)
        wait_until(functools.partial(has_queued, group, i), JOIN_S, 0.002, f"{i} queued")
    return leader, followers


def join_all(senders: Sequence[Sender]) -> None:
    for sender in senders:
        sender.join(JOIN_S)
    stuck = [s.name for s in senders if s.is_alive()]
    assert not stuck, f"submit() never returned for {stuck}"


# -- one request -----------------------------------------------------------------------------


def test_a_single_submit_is_sent_alone_at_once_and_returns_its_result() -> None:
    calls: list[list[str]] = []

    def run_batch(requests: Sequence[str]) -> list[str]:
        calls.append(list(requests))
        return [r.upper() for r in requests]

    group: GroupCommit[str, str] = GroupCommit(run_batch)
    assert group.submit("abc") == "ABC"
    assert calls == [["abc"]]
    # Idle again: the next request goes alone too.
    assert group.submit("def") == "DEF"
    assert calls == [["abc"], ["def"]]


def test_max_batch_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(lambda rs: list(rs), max_batch=0)


# -- batches form while one is in flight ---------------------------------------------------


def test_requests_arriving_during_a_slow_batch_go_together_each_getting_its_own_result() -> None:
    runner = HeldRunner(answer=lambda r: ("answer", r))
    group: GroupCommit[Any, Any] = GroupCommit(runner)
    requests = list(range(19))
    leader, followers = start_behind_held_batch(group, runner.entered, requests)
    assert runner.batches == [["leader"]]  # nothing else sent while the first batch is out
    assert all(s.is_alive() for s in followers)
    runner.release.set()
    join_all([leader, *followers])

    assert leader.error is None and leader.result == ("answer", "leader")
    for sender in followers:
        assert sender.error is None, sender.error
        assert sender.result == ("answer", sender.request)
    # 20 requests, 2 round trips: the 19 that waited went as one batch, in arrival order.
    assert runner.batches == [["leader"], requests]
    sent = [r for batch in runner.batches for r in batch]
    assert sorted(map(str, sent)) == sorted(map(str, ["leader", *requests]))
    assert len(sent) == len(set(map(str, sent))) == 20


def test_twenty_threads_released_at_once_are_all_answered_in_fewer_batches() -> None:
    """Without steering the queue: 20 threads start together while the runner is slow; every
    request is sent exactly once, and fewer round trips than requests were made."""
    gate = threading.Event()
    batches: list[list[int]] = []
    lock = threading.Lock()

    def run_batch(requests: Sequence[int]) -> list[int]:
        with lock:
            batches.append(list(requests))
        gate.wait(JOIN_S)  # slow: every batch waits until all 20 threads are submitting
        return [r * 10 for r in requests]

    group: GroupCommit[int, int] = GroupCommit(run_batch)
    barrier = threading.Barrier(20)

    class Racer(Sender):
        def run(self) -> None:
            barrier.wait(JOIN_S)
            super().run()

    senders = [Racer(group, i) for i in range(20)]
    for sender in senders:
        sender.start()
    # Opened once the first batch is out and the other 19 are queued behind it.
    wait_until(lambda: batches and queued(group) == 20 - len(batches[0]), JOIN_S, 0.002)
    gate.set()
    join_all(senders)
    for sender in senders:
        assert sender.error is None and sender.result == sender.request * 10
    sent = sorted(r for batch in batches for r in batch)
    assert sent == list(range(20))
    assert len(batches) == 2 < 20


def test_max_batch_caps_every_batch_and_keeps_arrival_order() -> None:
    runner = HeldRunner()
    group: GroupCommit[Any, Any] = GroupCommit(runner, max_batch=4)
    leader, followers = start_behind_held_batch(group, runner.entered, list(range(10)))
    runner.release.set()
    join_all([leader, *followers])
    assert runner.batches == [["leader"], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert max(len(b) for b in runner.batches) <= 4
    for sender in [leader, *followers]:
        assert sender.error is None and sender.result == f"done:{sender.request}"


# -- failures ---------------------------------------------------------------------------------


def test_a_per_request_exception_is_raised_to_its_sender_only() -> None:
    errors = {r: ValueError(f"refused {r}") for r in (1, 4)}
    runner = HeldRunner(answer=lambda r: errors.get(r, f"ok:{r}"))
    group: GroupCommit[Any, Any] = GroupCommit(runner)
    leader, followers = start_behind_held_batch(group, runner.entered, list(range(6)))
    runner.release.set()
    join_all([leader, *followers])
    assert runner.batches == [["leader"], [0, 1, 2, 3, 4, 5]]  # 1 and 4 shared their batch
    assert leader.result == "ok:leader" and leader.error is None
    for sender in followers:
        if sender.request in errors:
            assert sender.error is errors[sender.request]
            assert not sender.returned
        else:
            assert sender.error is None
            assert sender.result == f"ok:{sender.request}"


def test_a_batch_runner_that_raises_fails_its_whole_batch_and_later_requests_still_work() -> None:
    boom = ConnectionError("the batch failed")
    batches: list[list[Any]] = []
    entered, release = threading.Event(), threading.Event()

    def run_batch(requests: Sequence[Any]) -> list[Any]:
        batches.append(list(requests))
        if len(batches) == 1:
            entered.set()
            release.wait(JOIN_S)
        elif len(batches) == 2:
            raise boom
        return [f"ok:{r}" for r in requests]

    group: GroupCommit[Any, Any] = GroupCommit(run_batch)
    leader, followers = start_behind_held_batch(group, entered, ["a", "b", "c"])
    release.set()
    join_all([leader, *followers])

    assert batches == [["leader"], ["a", "b", "c"]]
    assert leader.error is None and leader.result == "ok:leader"  # its batch had succeeded
    for sender in followers:
        assert sender.error is boom, sender.error
    # Not stuck "sending": the next requests are sent, alone and then together.
    assert group.submit("later") == "ok:later"
    assert batches[-1] == ["later"]
    after = [Sender(group, f"x{i}") for i in range(5)]
    for sender in after:
        sender.start()
    join_all(after)
    assert [s.result for s in after] == [f"ok:x{i}" for i in range(5)]
    assert sorted(r for b in batches[3:] for r in b) == [f"x{i}" for i in range(5)]


@pytest.mark.parametrize("extra", [-1, 1], ids=["too-few", "too-many"])
def test_a_runner_answering_the_wrong_number_of_requests_makes_them_raise(extra: int) -> None:
    def run_batch(requests: Sequence[str]) -> list[str]:
        answers = [f"ok:{r}" for r in requests]
        return answers[:extra] if extra < 0 else [*answers, "spare"]

    group: GroupCommit[str, str] = GroupCommit(run_batch)
    with pytest.raises(RuntimeError, match=r"batch runner answered \d+ of 1"):
        group.submit("alone")

    # In a batch of several: every sender of that batch raises.
    runner = HeldRunner()
    calls: list[list[str]] = []

    def held(requests: Sequence[str]) -> list[str]:
        calls.append(list(requests))
        if len(calls) == 1:
            return runner(requests)
        return run_batch(requests)

    group = GroupCommit(held)
    leader, followers = start_behind_held_batch(group, runner.entered, ["p", "q", "r"])
    runner.release.set()
    join_all([leader, *followers])
    assert leader.result == "done:leader"
    for sender in followers:
        assert isinstance(sender.error, RuntimeError)
        assert f"of {len(followers)}" in str(sender.error)
    assert calls == [["leader"], ["p", "q", "r"]]
