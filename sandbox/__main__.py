"""`python -m sandbox ...`: the local WeChat platform (serve) and the simulator of WeChat's pushes."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from sandbox import server, simulator

    server.add_cli(commands)
    simulator.add_cli(commands)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
