"""A test server used as a context manager: started on entry (closed again if starting fails
half-way), closed on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Managed:
    def start(self) -> object:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # what did start (a cluster's first node, a data dir) goes too
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
