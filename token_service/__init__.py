"""One always-valid WeChat access_token (and jsapi_ticket) in Redis for every process and script.

`python -m token_service run` is the only thing that calls WeChat's token API; everything else reads
Redis through `token_service.consumer` (or `redis-cli GET wechat:access_token:<appid>`).
"""

from token_service.consumer import (
    TokenClient,
    TokenServiceClient,
    TokenUnavailable,
    get_access_token,
    get_jsapi_ticket,
    jsapi_signature,
    request_refresh,
)

__all__ = [
    "TokenClient",
    "TokenServiceClient",
    "TokenUnavailable",
    "get_access_token",
    "get_jsapi_ticket",
    "jsapi_signature",
    "request_refresh",
]
