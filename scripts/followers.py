"""List the account's followers' OpenIDs (one per line), with the token service's token.

    python scripts/followers.py          # every OpenID
    python scripts/followers.py --count  # only how many
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api_call import run_api_call  # scripts/ is on sys.path: it holds the script

from token_service.consumer import TokenServiceClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", action="store_true", help="print the number of followers only")
    args = parser.parse_args(argv)

    def list_followers(client: TokenServiceClient) -> None:
        if args.count:
            print(client.user.get_followers().get("total", 0))
        else:
            for openid in client.user.iter_followers():
                print(openid)

    return run_api_call(list_followers)


if __name__ == "__main__":
    sys.exit(main())
