"""Tests of handlers/, the handlers that replies.yaml names (the ISBN lookup in handlers/books.py)."""
