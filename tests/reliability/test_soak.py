"""The soak's quick version (about 25 s through nginx + uWSGI with a Redis restart and a worker kill):
every push answered in the end, every answer acceptable to WeChat, nothing handled twice or lost
outside a fault's window. The full run is `make soak` (docs/reliability.md)."""

from __future__ import annotations

from soak.report import machine, render
from soak.run import Soak, SoakSettings


def test_quick_soak_through_nginx_with_retries_and_faults_loses_nothing_and_handles_nothing_twice() -> None:
    figures = Soak(SoakSettings(duration=22, clients=6), log=lambda line: None).run()
    summary = render(figures, machine(), "tests/reliability/test_soak.py")
    # Something to judge, however slow the machine: how many pushes fit in 22 s is a throughput figure,
    # measured by `make soak` and `make bench` (docs/benchmarks.md), not a pass mark here.
    assert figures.pushes >= figures.counted > 0, summary
    assert len(figures.faults) == 2, summary
    assert figures.deliberate_resends > 0, summary
    assert figures.final_failures == 0, summary
    assert figures.check_errors == 0, summary
    assert figures.duplicated_outside_faults == 0, summary
    assert figures.lost == 0, summary
    assert figures.handled_runs >= figures.counted, summary
