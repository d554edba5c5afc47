"""Send one customer-service message (`/cgi-bin/message/custom/send`) with the token from token_service.

custom/send has no idempotency key, so a call that may have reached WeChat is never repeated: only errors
that prove the message was not taken (no connection, errcode -1, a rejected token) are retried, and a
bounded number of times. 45015 and 45047 are final.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests
import urllib3

from token_service.consumer import TokenUnavailable, get_access_token, request_refresh
from token_service.policy import INVALID_TOKEN_ERRCODES
from token_service.store import fingerprint

log = logging.getLogger("slow_replies")

SEND_PATH = "/cgi-bin/message/custom/send"
TYPING_PATH = "/cgi-bin/message/custom/typing"
API_UNAUTHORIZED = 48001  # an account without the customer-service permission (unverified): see slow_replies/hold.py
HTTP_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds
RETRYABLE_ERRCODES = frozenset({-1})  # "system busy": WeChat did not take the message
FINAL_REASONS = {
    45015: "outside the 48-hour customer-service window (or the follower unfollowed)",
    45047: "the follower's customer-service message quota is used up (5 per message they send)",
    45008: "a customer-service news message carries 1 article only",
    40003: "the OpenID is not a follower of this account",
    48001: "this account lacks the customer-service message permission",
}


@dataclass(frozen=True)
class DeliveryResult:
    sent: bool
    errcode: int | None = None  # None with sent=False: no answer from WeChat (see detail)
    detail: str = ""


class _NotTaken(Exception):
    """The request cannot have reached WeChat (no connection): safe to try again."""


class _MaybeTaken(Exception):
    """The request went out but no usable answer came back: WeChat may have delivered it."""


def _never_reached_wechat(error: requests.RequestException) -> bool:
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, urllib3.exceptions.NewConnectionError)


class CustomMessageSender:
    """custom/send through one HTTP session; tokens from Redis (token_service), never fetched here."""

    def __init__(
        self,
        api_base: str,
        appid: str,
        redis_client: redis.Redis,
        attempts: int = 3,
        backoff_seconds: float = 1.0,
        refresh_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = api_base.rstrip("/") + SEND_PATH
        self.typing_url = api_base.rstrip("/") + TYPING_PATH
        self.appid = appid
        self.redis_client = redis_client
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.refresh_wait = refresh_wait
        self.sleep = sleep
        self.session = requests.Session()

    def _post(self, token: str, body: bytes, url: str | None = None) -> int:
        try:
            response = self.session.post(
                url or self.url,
                params={"access_token": token},
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as error:
            # The message of a requests error holds the URL, token included: only its type is logged.
            if _never_reached_wechat(error):
                raise _NotTaken(type(error).__name__) from None
            raise _MaybeTaken(type(error).__name__) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            raise _MaybeTaken(f"HTTP {response.status_code} without a WeChat answer")
        try:
            return int(answer.get("errcode", 0))
        except (TypeError, ValueError):
            raise _MaybeTaken("an answer without a numeric errcode") from None

    def typing(self, openid: str) -> DeliveryResult:
        """Show "typing..." to the follower (custom/typing): once, no retry; it is only a courtesy."""
        body = json.dumps({"touser": openid, "command": "Typing"}).encode("utf-8")
        try:
            errcode = self._post(get_access_token(self.redis_client, self.appid), body, self.typing_url)
        except (TokenUnavailable, redis.RedisError, _NotTaken, _MaybeTaken) as error:
            return DeliveryResult(False, None, str(error) if isinstance(error, TokenUnavailable) else
                                  type(error).__name__)
        return DeliveryResult(errcode == 0, errcode, "ok" if errcode == 0 else FINAL_REASONS.get(errcode, "refused"))

    def send(self, body: bytes) -> DeliveryResult:
        """Send `body` (custom/send JSON); every outcome is returned, nothing raised."""
        token: str | None = None
        refreshed = False
        failures = 0
        while True:
            try:
                if token is None:
                    token = get_access_token(self.redis_client, self.appid)
                errcode = self._post(token, body)
            except (TokenUnavailable, redis.RedisError, _NotTaken) as error:
                detail = str(error) if isinstance(error, TokenUnavailable) else type(error).__name__
                errcode, retry_detail = None, detail
                if isinstance(error, _NotTaken):
                    retry_detail = f"no connection to WeChat ({error})"
            except _MaybeTaken as error:
                return DeliveryResult(False, None, f"{error}: it may or may not have been delivered; "
                                                   "not sending again (at most once)")
            else:
                if errcode == 0:
                    return DeliveryResult(True, 0, "ok")
                if errcode in INVALID_TOKEN_ERRCODES:
                    if refreshed:
                        return DeliveryResult(False, errcode, "token rejected again after a refresh")
                    refreshed = True
                    log.info("custom/send: token #%s rejected (%d); asking token_service for a compare-and-refresh",
                             fingerprint(token), errcode)
                    try:
                        token = request_refresh(token, wait=self.refresh_wait, redis_client=self.redis_client,
                                                appid=self.appid)
                    except (TokenUnavailable, redis.RedisError) as error:
                        return DeliveryResult(False, errcode, f"no new token: {error}")
                    continue
                if errcode not in RETRYABLE_ERRCODES:
                    return DeliveryResult(False, errcode, FINAL_REASONS.get(errcode, "refused by WeChat"))
                retry_detail = f"errcode {errcode} (system busy)"
            failures += 1
            if failures >= self.attempts:
                return DeliveryResult(False, errcode, f"gave up after {failures} attempts: {retry_detail}")
            delay = self.backoff_seconds * 2 ** (failures - 1)
            log.warning("custom/send not taken (%s); trying again in %.1fs", retry_detail, delay)
            self.sleep(delay)
