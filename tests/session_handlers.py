"""Session handlers for tests/handlers/test_sessions_stack.py: two deliveries of one follower inside their
handlers at the same time, each writing its own field and appending to one list."""

from __future__ import annotations

import threading

from wechatpy.messages import BaseMessage

from weixin.sessions import Session

# Both deliveries wait here, after their sessions were loaded and before either is saved (uWSGI's threads of
# one worker share this module).
BOTH_INSIDE = threading.Barrier(2, timeout=10)


def remember(message: BaseMessage, session: Session) -> str:
    word = str(getattr(message, "content", "")).split()[-1]
    session.set(f"seen_{word}", True)
    session.append("words", word, keep=10)
    BOTH_INSIDE.wait()
    return f"记住了 {word}"


def recall(message: BaseMessage, session: Session) -> str:
    words = sorted(session.get("words") or [])
    fields = sorted(name for name in session if name.startswith("seen_"))
    return f"words={','.join(words)} fields={','.join(fields)}"
