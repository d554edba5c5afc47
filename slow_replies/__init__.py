"""Slow replies: a handler rule marked `background: true` runs in a worker process (`python -m slow_replies
worker`); its answer is the passive reply when ready by the deadline, else a customer-service message later."""
