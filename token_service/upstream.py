"""HTTP client for WeChat's token endpoints (stable_token, token, getticket): timeouts on every call,
a typed grant or a typed error with the errcode, and no secret in any message."""

from __future__ import annotations

from dataclasses import dataclass

import requests

STABLE_TOKEN_PATH = "/cgi-bin/stable_token"
CLASSIC_TOKEN_PATH = "/cgi-bin/token"
TICKET_PATH = "/cgi-bin/ticket/getticket"


@dataclass(frozen=True)
class Grant:
    """A credential as WeChat returned it; `expires_in` counts from when the request was sent."""

    value: str
    expires_in: float
    source: str


class UpstreamError(Exception):
    """WeChat answered with an errcode, or could not be reached (errcode None)."""

    def __init__(self, errcode: int | None, errmsg: str, endpoint: str) -> None:
        super().__init__(f"{endpoint}: errcode={errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint


class WeChatUpstream:
    """The only code that talks to WeChat for credentials; one instance per daemon."""

    def __init__(
        self,
        api_base: str,
        appid: str,
        secret: str,
        timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.appid = appid
        self._secret = secret
        self.timeout = timeout
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"WeChatUpstream(api_base={self.api_base!r}, appid={self.appid!r})"

    def stable_token(self, force_refresh: bool = False) -> Grant:
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        result = self._call("POST", STABLE_TOKEN_PATH, json=body)
        source = "stable-force" if force_refresh else "stable"
        return self._grant(result, "access_token", STABLE_TOKEN_PATH, source)

    def classic_token(self) -> Grant:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
        result = self._call("GET", CLASSIC_TOKEN_PATH, params=params)
        return self._grant(result, "access_token", CLASSIC_TOKEN_PATH, "classic")

    def jsapi_ticket(self, access_token: str) -> Grant:
        result = self._call("GET", TICKET_PATH, params={"access_token": access_token, "type": "jsapi"})
        return self._grant(result, "ticket", TICKET_PATH, "getticket")

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        # requests' exception text contains the URL, whose query may hold the secret or a token:
        # report the exception type only.
        try:
            response = self.session.request(method, self.api_base + path, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise UpstreamError(None, f"timed out after {self.timeout}s", path) from None
        except requests.RequestException as error:
            reason = f"cannot reach {self.api_base} ({type(error).__name__})"
            raise UpstreamError(None, reason, path) from None
        if response.status_code != 200:
            raise UpstreamError(None, f"HTTP {response.status_code}", path)
        try:
            result = response.json()
        except ValueError:
            raise UpstreamError(None, "response is not JSON", path) from None
        if not isinstance(result, dict):
            raise UpstreamError(None, "response is not a JSON object", path)
        errcode = result.get("errcode", 0)
        try:
            errcode = int(errcode)
        except (TypeError, ValueError):
            errcode = -1
        if errcode != 0:
            raise UpstreamError(errcode, self._scrub(str(result.get("errmsg", ""))), path)
        return result

    def _grant(self, result: dict, field: str, path: str, source: str) -> Grant:
        value = result.get(field)
        try:
            expires_in = float(result.get("expires_in", 0))
        except (TypeError, ValueError):
            expires_in = 0.0
        if not isinstance(value, str) or not value or expires_in <= 0:
            raise UpstreamError(None, f"response lacks {field} or expires_in", path)
        return Grant(value, expires_in, source)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text
