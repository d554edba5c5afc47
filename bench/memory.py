"""Memory of one uWSGI worker of ours as messages go through nginx: its private memory (RssAnon), the shared
memory it has touched (RssShmem: uWSGI's dedupe cache, reserved in full at start and counted in VmRSS page
by page as claims first land in it) and VmRSS, after a warm-up and after each quarter of the messages,
every message distinct (each one claims new keys). A leak shows in the private memory."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import compare

from devstack.processes import RedisServer


@dataclass
class MemorySample:
    messages: int  # sent after the warm-up
    private_kb: int
    shared_kb: int
    rss_kb: int


@dataclass
class WorkerMemory:
    warm_up_messages: int
    samples: list[MemorySample]
    same_worker: bool
    errors: int
    worker_events: list[str]

    @property
    def growth_kb_per_10k(self) -> float:
        """The slope from the first sample after the warm-up to the last: what each message adds for good."""
        first, last = self.samples[1], self.samples[-1]
        return (last.private_kb - first.private_kb) / max(1, last.messages - first.messages) * 10_000

    @property
    def first_step_kb(self) -> int:
        """What the first quarter added after the warm-up (buffers and caches reaching their size)."""
        return self.samples[1].private_kb - self.samples[0].private_kb


def process_memory(pid: int) -> tuple[int, int, int]:
    """(RssAnon, RssShmem, VmRSS) in kB from /proc (zeros when the process is gone)."""
    fields = {"RssAnon": 0, "RssShmem": 0, "VmRSS": 0}
    if not Path(f"/proc/{pid}/status").exists():
        return 0, 0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            fields[name] = int(value.split()[0])
    return fields["RssAnon"], fields["RssShmem"], fields["VmRSS"]


def measure_worker_memory(
    bench: compare.Bench, directory: Path, redis: RedisServer, messages: int = 100_000, warm_up: int = 5_000,
    steps: int = 4,
) -> WorkerMemory:
    env = compare.app_env(redis, "INFO")
    errors = 0
    with compare.serving(directory, None, env, workers=1) as served:
        [worker] = served.uwsgi.worker_pids()
        raw = compare.send_pool_once(served.url, bench.keyword_pool(warm_up), bench.connections)
        errors += compare.to_result("warm-up", raw).errors
        samples = [MemorySample(0, *process_memory(worker))]
        step = messages // steps
        for number in range(1, steps + 1):
            raw = compare.send_pool_once(served.url, bench.keyword_pool(step), bench.connections)
            errors += compare.to_result("step", raw).errors
            samples.append(MemorySample(number * step, *process_memory(worker)))
            print(f"  memory: {number * step} messages, private {samples[-1].private_kb} kB", file=sys.stderr,
                  flush=True)
        same_worker = served.uwsgi.worker_pids() == [worker]
        assert served.uwsgi.process is not None
        events = [line for line in served.uwsgi.process.log_text().splitlines()
                  if any(word in line for word in ("HARAKIRI", "Respawned", "Seeya", "DAMN", "signal 9"))]
    return WorkerMemory(warm_up, samples, same_worker, errors, events[:5])
