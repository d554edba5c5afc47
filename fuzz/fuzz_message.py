"""Coverage-guided fuzzing (atheris/libFuzzer) of parsing and decrypting a push, then matching and
rendering its reply. Run: python fuzz/fuzz_message.py -max_total_time=60 (any libFuzzer flag works)."""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Third-party code is imported first so that only the project's own modules are instrumented.
import web  # noqa: E402, F401
import wechatpy  # noqa: E402, F401
import yaml  # noqa: E402, F401

with atheris.instrument_imports():
    from fuzz.message_pipeline import check_one_input, seed_inputs

CORPUS = ROOT / "fuzz" / "corpus"
CRASHES = ROOT / "fuzz" / "crashes"


def seed_corpus() -> None:
    """Write the fixture seeds into the working corpus (new inputs the fuzzer finds are added there)."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in seed_inputs(ROOT / "tests" / "fixtures").items():
        path = CORPUS / f"seed-{name}"
        if not path.exists():
            path.write_bytes(data)


def main() -> None:
    seed_corpus()
    CRASHES.mkdir(parents=True, exist_ok=True)
    flags = [arg for arg in sys.argv[1:] if arg.startswith("-")]
    corpora = [arg for arg in sys.argv[1:] if not arg.startswith("-")] or [str(CORPUS)]
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        flags.append(f"-artifact_prefix={CRASHES}/")
    if not any(flag.startswith("-dict=") for flag in flags):
        flags.append(f"-dict={ROOT / 'fuzz' / 'message.dict'}")
    atheris.Setup([sys.argv[0], *flags, *corpora], check_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
