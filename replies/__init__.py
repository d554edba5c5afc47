"""`python -m replies check FILE`: the replies file checker, kept under its old command (see weixin/rules/cli.py)."""
