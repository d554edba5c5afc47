"""The tail the operator scripts share: one call to the WeChat API with the token service's token, and the
failures an operator can act on (no configuration, no token, WeChat's errcode) as one line on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable

from wechatpy.exceptions import WeChatClientException

from token_service.consumer import TokenServiceClient, TokenUnavailable
from weixin.config import ConfigError


def run_api_call(call: Callable[[TokenServiceClient], None], expected: tuple[type[Exception], ...] = ()) -> int:
    """The exit status of call(client): 0, or 1 after printing why (`expected` adds the caller's own errors)."""
    try:
        call(TokenServiceClient())
    except (ConfigError, TokenUnavailable, *expected) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except WeChatClientException as error:
        print(f"error: WeChat answered errcode {error.errcode}: {error.errmsg}", file=sys.stderr)
        return 1
    return 0
