"""The soak: minutes of mixed WeChat load through nginx + uWSGI with retries and faults (`python -m soak`)."""
