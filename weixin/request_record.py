"""The one log line per /weixin request: what each step of the POST path found, filled in as it goes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from weixin.logs import request_lines

# The endpoint's logger: the request line appears under the same name as the endpoint's other records.
log = logging.getLogger("weixin")


@dataclass
class RequestRecord:
    """What the one log line per request says."""

    mode: str = "-"
    kind: str = "-"
    rule: str = "-"
    dedupe: str = "-"
    reply: str = "-"
    status: int = 200
    started: float = field(default_factory=time.perf_counter)

    def write(self, method: str) -> None:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        request_lines.write(
            log,
            f"{method} mode={self.mode} type={self.kind} rule={self.rule} dedupe={self.dedupe} "
            f"reply={self.reply} status={self.status} ms={elapsed_ms:.1f}",
        )
