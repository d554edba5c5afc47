"""`python -m replies check FILE` validates a replies file without starting anything."""

import sys

from weixin.rules.cli import main

sys.exit(main())
