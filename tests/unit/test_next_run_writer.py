"""The start-up load's next_run writer: chunks in id order, the rest at finish, retries."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID, uuid4

import pytest

from services.model.records import NextRunWrite
from services.watch import next_run_writer
from services.watch.next_run_writer import NextRunWriter


def writes(n: int) -> list[NextRunWrite]:
    return [NextRunWrite(uuid4(), None, f"hash-{i}") for i in range(n)]


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.chunks: list[list[UUID]] = []
        self.failures = failures
        self.calls = 0

    def __call__(self, chunk: Sequence[NextRunWrite]) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the pool is closed")
        self.chunks.append([w.schedule_id for w in chunk])
        return len(chunk)


def test_full_chunks_go_while_adding_and_the_rest_at_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(next_run_writer, "NEXT_RUN_CHUNK", 4)
    recorder = Recorder()
    writer = NextRunWriter(recorder, threading.Event())
    items = writes(10)
    for item in items:
        writer.add(item)
    writer.finish()
    assert writer.join(5)
    assert [len(c) for c in recorder.chunks] == [4, 4, 2]
    assert all(chunk == sorted(chunk) for chunk in recorder.chunks)  # one lock order
    assert sorted(i for c in recorder.chunks for i in c) == sorted(w.schedule_id for w in items)


def test_a_failed_chunk_is_tried_again_up_to_three_times() -> None:
    recorder = Recorder(failures=2)
    writer = NextRunWriter(recorder, threading.Event())
    for item in writes(3):
        writer.add(item)
    writer.finish()
    assert writer.join(5)
    assert recorder.calls == 3 and len(recorder.chunks) == 1

    hopeless = Recorder(failures=10)
    writer = NextRunWriter(hopeless, threading.Event())
    writer.add(writes(1)[0])
    writer.finish()
    assert writer.join(5)
    assert hopeless.calls == 3 and hopeless.chunks == []


def test_nothing_is_written_once_the_daemon_stops() -> None:
    stop = threading.Event()
    stop.set()
    recorder = Recorder()
    writer = NextRunWriter(recorder, stop)
    writer.add(writes(1)[0])
    writer.finish()
    assert writer.join(5)
    assert recorder.calls == 0
