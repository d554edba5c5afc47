"""The soak's reply handler: records every run in a file (Redis is restarted during the soak, so the
count of runs cannot live there)."""

from __future__ import annotations

import os
from typing import Any


def count_handling(message: Any) -> str:
    # One short O_APPEND write per run: atomic between the uWSGI workers.
    descriptor = os.open(os.environ["SOAK_HANDLED_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, f"{message.content}\n".encode())
    finally:
        os.close(descriptor)
    return f"handled {message.content}"
