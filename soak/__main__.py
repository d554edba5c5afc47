"""`python -m soak [--duration S] [--clients N] [--workers N] [--output docs/reliability.md]`: run the soak,
print the figures, write the page; exit 1 on a 5xx left unanswered, a duplicate or a loss outside a fault."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.processes import PROJECT_ROOT
from soak.report import machine, readme_section, render, replace_readme_section
from soak.run import Soak, SoakSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="uWSGI workers (default 2)")
    parser.add_argument("--faults", default="redis-restart,worker-kill", help="comma-separated, in order")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "docs" / "reliability.md")
    parser.add_argument("--readme", type=Path, help="also rewrite the table between the soak markers of this file")
    args = parser.parse_args(argv)
    faults = tuple(name for name in args.faults.split(",") if name)
    settings = SoakSettings(duration=args.duration, clients=args.clients, workers=args.workers, faults=faults)
    figures = Soak(settings).run()
    command = "python -m soak " + " ".join(argv if argv is not None else sys.argv[1:])
    page = render(figures, machine(), command.strip())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    if args.readme is not None:
        section = readme_section(figures, machine(), command.strip())
        args.readme.write_text(replace_readme_section(args.readme.read_text(), section))
    print(page)
    failed = figures.final_failures or figures.check_errors or figures.duplicated_outside_faults
    return 1 if failed or figures.lost_outside_faults else 0


if __name__ == "__main__":
    sys.exit(main())
