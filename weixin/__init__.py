"""The production package: the request path and the web process that index.py and handle.py build on."""
