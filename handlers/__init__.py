"""Handlers that replies.yaml names with `handler: "handlers.<module>:<function>"`."""
