"""The fuzz target's checks (fuzz/message_pipeline.py) over its seed corpus; an input the fuzzer crashes
on goes to tests/fixtures/fuzz_crashes/ (none so far) and is replayed here too."""

from __future__ import annotations

from fuzz.message_pipeline import check_one_input, seed_inputs
from tests.wechat_requests import FIXTURES


def test_every_fixture_and_past_fuzz_crash_passes_the_fuzz_checks_plain_encrypted_and_as_an_encrypt_value() -> None:
    seeds = seed_inputs(FIXTURES)
    assert len(seeds) > 100
    crashes = sorted((FIXTURES / "fuzz_crashes").glob("*")) if (FIXTURES / "fuzz_crashes").is_dir() else []
    for data in [*seeds.values(), *(path.read_bytes() for path in crashes)]:
        check_one_input(data)
