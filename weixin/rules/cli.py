"""`python -m replies check FILE`: validate a replies file without starting anything."""

from __future__ import annotations

import sys

from weixin.rules.checker import load_rules
from weixin.rules.model import RulesError


def main(argv: list[str] | None = None) -> int:
    """The `check` command: 0 when the file is valid, 1 with every problem on stderr, 2 for a usage error."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m replies check FILE", file=sys.stderr)
        return 2
    try:
        rules = load_rules(args[1])
    except RulesError as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"{args[1]}: OK — {len(rules.keywords)} keyword rules, {len(rules.menu)} menu keys, "
        f"{len(rules.scenes)} QR scenes, default: {rules.default.kind if rules.default else 'nothing'}"
    )
    return 0
