"""The `python` job: call an in-process function named by `payload.callable`.

Two ways to name one: a handler registered in code with `register_python_handler(name, func)`,
or `"pkg.module:function"` whose module is, or is under, a `PYTHON_HANDLER_ALLOWLIST` prefix.
A refused name is never imported (importing runs module code).

The call runs on the runner's worker thread, and a thread cannot be killed: a long callable must
watch `ctx.cancel_event` (set by the runner on time-out, lock loss, cancel and shutdown) and return
soon after it is set. A call that returns after `ctx.timeout` is recorded as TIMED_OUT.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import (
    JobContext,
    JobOutcome,
    json_safe,
    parse_scan_id,
    run_guarded,
)
from services.errors import RetryableError
from services.model.vocabulary import ExecutionStatus

PythonCallable = Callable[[JobContext], Mapping[str, Any] | None]

_SPEC = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)")

_registered: dict[str, PythonCallable] = {}
_registered_lock = threading.Lock()


def register_python_handler(name: str, func: PythonCallable) -> None:
    """Lets jobs whose `payload.callable` is `name` call `func` (a later call replaces it)."""
    if not name or not name.strip():
        raise ValueError("a python handler needs a non-empty name")
    if not callable(func):
        raise TypeError(f"python handler {name!r} must be callable")
    with _registered_lock:
        _registered[name] = func


def _registered_handler(name: str) -> PythonCallable | None:
    with _registered_lock:
        return _registered.get(name)


def _module_allowed(module: str, prefixes: Sequence[str]) -> bool:
    # Whole dotted components: `tests.support` covers `tests.support.x`, not `tests.supportx`.
    parts = module.split(".")
    return any(parts[: len(p.split("."))] == p.split(".") for p in prefixes)


class PythonHandler:
    def __init__(self, *, allowlist: Sequence[str], clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._allowlist = tuple(entry for entry in (e.strip() for e in allowlist) if entry)

    def run(self, ctx: JobContext) -> JobOutcome:
        return run_guarded(ctx, "python", self._run)

    def _resolve(self, spec: object) -> PythonCallable | JobOutcome:
        """The function to call, or the refusal explaining why there is none."""
        if not isinstance(spec, str) or not spec:
            return JobOutcome.failure(
                "invalid_callable",
                "python job needs payload.callable: 'pkg.module:function' or a registered name",
                retryable=False,
            )
        func = _registered_handler(spec)
        if func is not None:
            return func
        match = _SPEC.fullmatch(spec)
        if match is None:
            return JobOutcome.failure(
                "invalid_callable",
                f"python callable {spec!r} is neither a registered handler "
                "nor of the form 'pkg.module:function'",
                retryable=False,
            )
        module_name, attr = match["module"], match["function"]
        if not _module_allowed(module_name, self._allowlist):
            allowed = ", ".join(self._allowlist) or "nothing"
            return JobOutcome.failure(
                "callable_not_allowed",
                f"python callable {spec!r} is not under PYTHON_HANDLER_ALLOWLIST "
                f"(allowed: {allowed})",
                retryable=False,
                callable=spec,
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            return JobOutcome.failure(
                "import_error", f"cannot import {module_name!r}: {exc}", retryable=False
            )
        found = getattr(module, attr, None)
        if not callable(found):
            return JobOutcome.failure(
                "invalid_callable",
                f"{module_name!r} has no callable named {attr!r}",
                retryable=False,
            )
        resolved: PythonCallable = found
        return resolved

    def _run(self, ctx: JobContext) -> JobOutcome:
        spec = ctx.payload.get("callable")
        func = self._resolve(spec)
        if isinstance(func, JobOutcome):
            ctx.log.warning("handler.python.refused", reason=func.error_message)
            return func

        ctx.log.debug("handler.python.started", callable=spec)
        started = self._clock.monotonic()
        result: object = None
        error: BaseException | None = None
        try:
            result = func(ctx)
        # SystemExit too: a callable calling sys.exit() must not silently end a worker thread.
        except (Exception, SystemExit) as exc:
            error = exc
        duration = self._clock.monotonic() - started
        ctx.log.debug(
            "handler.python.finished",
            callable=spec,
            duration_s=round(duration, 3),
            error_type=None if error is None else type(error).__name__,
        )

        if duration >= ctx.timeout:
            return JobOutcome.failure(
                "timeout",
                f"python callable {spec!r} returned after {duration:.3g} s, "
                f"over its {ctx.timeout:g} s time-out",
                retryable=True,
                status=ExecutionStatus.TIMED_OUT,
            )
        # Checked before `error`: a callable that noticed the cancel may well stop by raising.
        if ctx.cancel_event.is_set():
            return JobOutcome.failure(
                "cancelled",
                f"python callable {spec!r} was cancelled",
                retryable=False,
                status=ExecutionStatus.CANCELLED,
            )
        if error is not None:
            return JobOutcome.from_exception(error, retryable=isinstance(error, RetryableError))
        return _completed(result)


def _completed(result: object) -> JobOutcome:
    if result is None:
        return JobOutcome(status=ExecutionStatus.COMPLETED)
    if not isinstance(result, Mapping):
        return JobOutcome(status=ExecutionStatus.COMPLETED, metadata={"result": repr(result)})
    metadata = json_safe(result)
    return JobOutcome(
        status=ExecutionStatus.COMPLETED,
        scan_id=parse_scan_id(metadata.get("scan_id")),
        metadata=metadata,
    )
