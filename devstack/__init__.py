"""The local stack runner (a dev tool): `python -m devstack` (make run) and the processes tests start."""
