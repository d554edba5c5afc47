"""scripts/followers.py and scripts/menu.py run as scripts, and say in one line why they cannot call WeChat."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [["followers.py", "--count"], ["menu.py", "get"]])
def test_a_script_without_configuration_says_why_and_exits_1(argv: list[str], tmp_path: Path) -> None:
    # No environment and a cwd without .env: the token service's settings are missing.
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / argv[0]), *argv[1:]], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: WECHAT_APPID is required"), result.stderr
    assert "Traceback" not in result.stderr
