"""猜数字 (guess the number): the README's worked example of a follower session, a flow of several messages.

`猜数字` starts a game (the secret goes into the follower's session); each `猜 50` compares with it and says
大了 / 小了 / 猜对了. The rules that route the two messages here are in replies.yaml (see README, 会话).
"""

from __future__ import annotations

import random
import re

from wechatpy.messages import BaseMessage

from weixin.sessions import Session

HIGHEST = 100
GUESS = re.compile(r"\d{1,3}")


def start(message: BaseMessage, session: Session) -> str:
    """A new game: a secret from 1 to HIGHEST in the session, the number of tries back to zero."""
    session.set("guess_secret", random.randint(1, HIGHEST))
    session.set("guess_tries", 0)
    return f"我想好了一个 1 到 {HIGHEST} 之间的数，发送「猜 50」试试。"


def guess(message: BaseMessage, session: Session) -> str:
    """One try; the session says which game it belongs to (none: how to start one)."""
    secret = session.get("guess_secret")
    found = GUESS.search(str(getattr(message, "content", "") or ""))
    if secret is None:
        return "还没有开始，发送「猜数字」开始一局。"
    if found is None:
        return f"发送「猜」加一个 1 到 {HIGHEST} 的数，比如「猜 50」。"
    number, tries = int(found.group()), int(session.get("guess_tries", 0)) + 1
    if number == secret:
        session.delete("guess_secret")
        session.delete("guess_tries")
        return f"猜对了！就是 {secret}，你用了 {tries} 次。再来一局发送「猜数字」。"
    session.set("guess_tries", tries)
    return f"{number} {'大了' if number > secret else '小了'}（第 {tries} 次）"
