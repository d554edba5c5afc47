"""Handler names in the replies file (`module:function`): old spellings, and the way back from a function to
its name (how the worker finds a background handler)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# Handler modules under their names before the move to handlers/ and weixin/ and the renames of issue 14: an
# old replies file still loads, with one warning per use naming the new spelling.
OLD_HANDLER_MODULES = {
    "books": "handlers.books",
    "oauth.replies": "weixin.oauth.profile_link",
    "weixin.oauth.replies": "weixin.oauth.profile_link",
}


def current_handler_name(path: str) -> str:
    """`module:function` with a module's old name (OLD_HANDLER_MODULES) replaced by its new one."""
    module_name, colon, function_name = path.partition(":")
    return f"{OLD_HANDLER_MODULES.get(module_name, module_name)}{colon}{function_name}"


def handler_path(function: Any) -> str | None:
    """`module:function` that imports back to `function` (how a worker process finds it), else None."""
    module_name, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name and "." not in name else None
    except (ImportError, AttributeError):
        return None
    return f"{module_name}:{name}" if found is function else None


def resolve_handler(path: str) -> Callable[..., Any]:
    """The function a handler name (old spellings too) imports to; ImportError or AttributeError when none."""
    module_name, _, function_name = current_handler_name(path).partition(":")
    return getattr(importlib.import_module(module_name), function_name)
