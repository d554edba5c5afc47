"""The rules of the replies file (replies.yaml, REPLIES_FILE): what each message gets back.

model.py is the rules as data and matching (pure); loader.py reads the YAML with line numbers; checker.py
validates it into a RuleSet; live.py reloads it in a running process when it changes; cli.py is
`python -m replies check FILE`; handler_names.py resolves `module:function` (old spellings too); regex.py
runs keyword regexes on RE2.
"""

from weixin.rules.checker import load_rules, parse_rules
from weixin.rules.handler_names import OLD_HANDLER_MODULES, current_handler_name, handler_path, resolve_handler
from weixin.rules.live import CHECK_INTERVAL_SECONDS, RELOAD_WAIT_SECONDS, LiveRules
from weixin.rules.model import (
    EVENT_KINDS,
    MAX_ARTICLES_FOR_EVENT,
    MAX_ARTICLES_FOR_MESSAGE,
    MESSAGE_KINDS,
    PLACEHOLDERS,
    REPLY_KINDS,
    KeywordRule,
    Match,
    Reply,
    RulesError,
    RuleSet,
    Template,
)

__all__ = [
    "CHECK_INTERVAL_SECONDS", "EVENT_KINDS", "MAX_ARTICLES_FOR_EVENT", "MAX_ARTICLES_FOR_MESSAGE", "MESSAGE_KINDS",
    "OLD_HANDLER_MODULES", "PLACEHOLDERS", "RELOAD_WAIT_SECONDS", "REPLY_KINDS", "KeywordRule", "LiveRules", "Match",
    "Reply", "RuleSet", "RulesError", "Template", "current_handler_name", "handler_path", "load_rules", "parse_rules",
    "resolve_handler",
]
