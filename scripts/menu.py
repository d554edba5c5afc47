"""Create or show the custom menu (自定义菜单) from a YAML or JSON file, with the token service's token.

    python scripts/menu.py create scripts/menu.example.yaml
    python scripts/menu.py get
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from api_call import run_api_call  # scripts/ is on sys.path: it holds the script

from token_service.consumer import TokenServiceClient


def load_menu(path: Path) -> dict:
    """The menu body WeChat expects ({"button": [...]}) from a .json, .yaml or .yml file."""
    text = path.read_text(encoding="utf-8")
    menu = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(menu, dict) or not isinstance(menu.get("button"), list):
        raise ValueError(f"{path}: the menu must be a mapping with a 'button' list")
    return menu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="replace the menu with the one in FILE")
    create.add_argument("file", type=Path)
    commands.add_parser("get", help="print the current menu as JSON")
    args = parser.parse_args(argv)

    def create_or_show(client: TokenServiceClient) -> None:
        if args.command == "create":
            client.menu.create(load_menu(args.file))
            print(f"menu created from {args.file}")
        else:
            print(json.dumps(client.menu.get(), ensure_ascii=False, indent=2))

    return run_api_call(create_or_show, expected=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
