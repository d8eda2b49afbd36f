"""output_tail: one text of what a run printed, answered or raised, from what its handler stored.

The outcomes come from the handlers' own code where it runs without processes or a network, so a
change of what a handler records shows up here.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from services.engine.handlers import JobOutcome
from services.engine.handlers.command import CommandHandler, _Tail
from services.engine.handlers.http import HttpHandler
from services.engine.handlers.python import _completed
from services.model.records import Execution
from services.model.run_output import output_tail
from services.model.vocabulary import ExecutionStatus

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def execution(
    metadata: dict[str, Any] | None = None, error_details: dict[str, Any] | None = None
) -> Execution:
    return Execution(
        execution_id=uuid4(),
        schedule_id=uuid4(),
        job_id="job",
        domain="example.com",
        domain_config_id=uuid4(),
        status="completed",
        started_at=NOW,
        scheduled_for=NOW,
        metadata=metadata,
        error_details=error_details,
    )


def stored(outcome: JobOutcome) -> Execution:
    """The row a run with this outcome leaves (its JSON columns as they come back)."""
    return execution(
        json.loads(json.dumps(outcome.metadata)), json.loads(json.dumps(outcome.error_details))
    )


def tail_of(data: bytes) -> _Tail:
    """The handler's own stream reader, fed `data` through a pipe (small: fits its buffer)."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    reader = _Tail(os.fdopen(read_end, "rb"))
    reader.thread.join(5)
    return reader


def command(stdout: bytes, stderr: bytes, returncode: int = 0) -> Execution:
    outcome = CommandHandler._outcome("prog", returncode, None, tail_of(stdout), tail_of(stderr), 5)
    return stored(outcome)


def http(status: int, body: bytes, truncated: bool = False) -> Execution:
    response = httpx.Response(status, content=body)
    return stored(HttpHandler._outcome(response, body, truncated, 0.2))


# -- command jobs -----------------------------------------------------------------------------


def test_command_output_is_both_streams_labelled() -> None:
    run = command(b"line 1\nline 2\n", b"warning: x\n")
    assert output_tail(run) == "[stdout]\nline 1\nline 2\n[stderr]\nwarning: x"


def test_a_failed_command_shows_its_output_too() -> None:
    run = command(b"partial\n", b"boom\n", returncode=3)
    assert run.error_details is not None and run.error_details["exit_code"] == 3
    assert output_tail(run) == "[stdout]\npartial\n[stderr]\nboom"


def test_only_the_streams_with_output_appear() -> None:
    assert output_tail(command(b"", b"only errors\n", 1)) == "[stderr]\nonly errors"
    assert output_tail(command(b"only out", b"")) == "[stdout]\nonly out"
    assert output_tail(command(b"", b"")) is None


def test_the_end_of_each_stream_is_kept_within_max_chars() -> None:
    run = command(b"o" * 50 + b"OUT-END\n", b"e" * 10 + b"ERR-END\n")
    text = output_tail(run, max_chars=60)
    assert text is not None and len(text) == 60
    stdout, stderr = text.split("\n[stderr]\n")
    # 41 characters of room: stderr (17) fits in its half whole, stdout gets the other 24.
    assert stderr == "e" * 10 + "ERR-END"
    assert stdout == "[stdout]\n…" + ("o" * 50 + "OUT-END")[-23:]
    # With less room each gets half: 21 -> 10 for stderr, 11 for stdout.
    assert output_tail(run, max_chars=40) == "[stdout]\n…oooOUT-END\n[stderr]\n…eeERR-END"


@pytest.mark.parametrize("max_chars", [1, 2, 5, 19, 20, 23, 24, 25, 60, 100, 4000])
@pytest.mark.parametrize(("out", "err"), [(300, 300), (300, 3), (0, 300), (3, 0), (17, 18)])
def test_never_longer_than_max_chars(max_chars: int, out: int, err: int) -> None:
    text = output_tail(command(b"x" * out, b"y" * err), max_chars=max_chars)
    assert text is not None
    assert len(text) <= max_chars
    if out + err + 20 <= max_chars:
        assert "…" not in text


def test_a_stream_the_handler_already_cut_is_marked() -> None:
    run = command(b"a" * 5000 + b"THE END", b"")
    assert run.metadata is not None and run.metadata["stdout_bytes"] == 5007
    text = output_tail(run)
    assert text is not None
    assert text.startswith("[stdout]\n…") and text.endswith("THE END")
    assert len(text) == 4000
    whole = output_tail(run, max_chars=5000)
    assert whole == "[stdout]\n…" + ("a" * 5000 + "THE END")[-4096:]


# -- http jobs --------------------------------------------------------------------------------


def test_http_json_answer_is_shown_as_json() -> None:
    run = http(200, b'{"scan_id": "abc", "rows": [1, 2]}')
    assert run.metadata is not None and "response" in run.metadata
    assert json.loads(output_tail(run) or "") == {"scan_id": "abc", "rows": [1, 2]}


def test_http_text_answer_and_error_bodies() -> None:
    assert output_tail(http(200, b"plain ok")) == "plain ok"
    failed = http(503, b"upstream down")
    assert failed.error_details is not None and failed.error_details["http_status"] == 503
    assert output_tail(failed) == "upstream down"
    long = http(500, b"<html>" + b"x" * 9000 + b"</html>")
    assert output_tail(long, max_chars=100) == "…" + ("x" * 9000 + "</html>")[-99:]


def test_http_without_a_body_or_an_answer_has_no_output() -> None:
    assert output_tail(http(204, b"")) is None
    refused = JobOutcome.failure("connect", "http request failed: refused", retryable=True)
    assert output_tail(stored(refused)) is None


# -- python jobs and rows without output -------------------------------------------------------


def test_python_result_and_traceback() -> None:
    run = stored(_completed({"scan_id": "s-1", "count": 3}))
    assert json.loads(output_tail(run) or "") == {"count": 3, "scan_id": "s-1"}
    assert output_tail(stored(_completed(42))) == '{"result": "42"}'
    assert output_tail(stored(_completed(None))) is None
    try:
        raise RuntimeError("the job broke")
    except RuntimeError as exc:
        crashed = stored(JobOutcome.from_exception(exc, retryable=False))
    text = output_tail(crashed)
    assert (
        text is not None and text.startswith("Traceback") and "RuntimeError: the job broke" in text
    )


def test_rows_without_output() -> None:
    assert output_tail(execution()) is None  # running, or claimed and never finished
    skipped = execution(error_details={"reason": "late"})
    assert output_tail(skipped) is None
    # Whatever a hand-made row holds in its JSON columns never breaks the read.
    odd = execution(metadata=["not", "a", "dict"], error_details="text")  # type: ignore[arg-type]
    assert output_tail(odd) is None
    assert output_tail(execution({"stdout_tail": 5, "stderr_tail": None})) is None


@pytest.mark.parametrize("max_chars", [0, -1, True, 2.5])
def test_max_chars_must_be_a_positive_int(max_chars: Any) -> None:
    with pytest.raises(ValueError, match="max_chars"):
        output_tail(execution(), max_chars=max_chars)


def test_cancelled_status_is_just_a_status() -> None:
    outcome = JobOutcome(status=ExecutionStatus.CANCELLED, metadata={"stdout_tail": "so far"})
    assert output_tail(stored(outcome)) == "[stdout]\nso far"
