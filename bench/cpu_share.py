"""Where the time goes under load: the CPU each process (the uWSGI worker, nginx, Redis, wrk) spends per
request in the keyword case (and ours in safe mode), for this project, WeRoBot and the bare function, from
the main table's rounds.

One more row serves this project with Redis unreachable, so that dedupe runs in uWSGI's shared cache
alone (weixin/local_dedupe.py): not a mode we ship (the issues require Redis), but it shows what is left of
the Redis work on the request path (write-behind batches) and what the rest of our request path costs.
"""

from __future__ import annotations

import compare


def section(results: list[compare.Result], connections: int) -> str:
    named = compare.by_name(results)
    ours = named[compare.OURS_KEYWORD_ROW]
    unix = named[compare.OURS_UNIX_ROW]
    sync = named[compare.OURS_SYNC_ROW]
    no_redis = named[compare.NO_REDIS_ROW]
    werobot = named[compare.WEROBOT_ROW]
    bare = named[compare.CEILING_ROW]
    safe = named[compare.OURS_SAFE_ROW]
    rows = [sync, ours, unix, safe, no_redis, werobot, bare]
    widths = (max(len(result.name) for result in rows), 7, 9, *(8,) * len(compare.CPU_COLUMNS))
    header = ("case", "req/s", "× WeRoBot", *(f"{column} µs" for column in compare.CPU_COLUMNS))
    lines = [compare.table_row(header, widths), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    for result in rows:
        cells = (
            result.name, f"{result.requests_per_second:.0f}", f"{compare.ratio(result, werobot):.2f}",
            *(f"{result.cpu_us[column]:.0f}" for column in compare.CPU_COLUMNS),
        )
        lines.append(compare.table_row(cells, widths))

    def worker(result: compare.Result) -> float:
        return result.cpu_us["uWSGI"]

    claim_in_worker = worker(ours) - worker(no_redis)
    stolen = max(result.stolen for result in rows)
    return "\n".join([
        "## Where the time goes under load",
        "",
        "CPU time per request of each process, summed over the main table's rounds of the keyword case "
        "(and of our safe-mode case) "
        "(bench/cpu_time.py reads /proc before and after each round). The uWSGI column is the one worker "
        "and its idle master; wrk's is the load generator, on the same two cores. Rates are the main "
        f"table's. The hypervisor took up to {stolen:.0%} of the machine's CPU during these rounds (steal).",
        "",
        *lines,
        "",
        "- A fresh delivery is claimed in uWSGI's shared cache and written to Redis behind the request, in "
        "batches a thread of the worker sends (weixin/write_behind.py); only a delivery old enough to be a "
        "retry waits on Redis. What is left of the Redis work in our worker, against the same server with "
        f"Redis unreachable: {claim_in_worker:+.0f} µs per request; Redis itself {ours.cpu_us['Redis']:.0f} µs "
        "(pipelined batches, no longer one round trip per message).",
        f"- Before and after, in the same rounds: with every claim waiting on Redis (the first row, "
        f"DEDUPE_WRITE_BEHIND=0) our worker takes {worker(sync):.0f} µs per request and Redis "
        f"{sync.cpu_us['Redis']:.0f} µs; with the write-behind {worker(ours):.0f} µs and {ours.cpu_us['Redis']:.0f} µs "
        f"({compare.ratio(ours, sync):.2f} × the synchronous rate).",
        f"- Our worker takes {worker(ours):.0f} µs per request, WeRoBot's {worker(werobot):.0f} µs; the bare "
        f"function's worker (uWSGI's own share) {worker(bare):.0f} µs.",
        f"- Safe mode costs our worker {worker(safe) - worker(ours):+.0f} µs per request against plaintext, and "
        f"nginx and wrk {safe.cpu_us['nginx'] + safe.cpu_us['wrk'] - ours.cpu_us['nginx'] - ours.cpu_us['wrk']:+.0f} "
        "µs together (its envelope is about twice the size each way); the in-process table below has the "
        "Python side.",
        f"- With {connections} connections on one worker the mean latency is {connections} / throughput: "
        f"{connections / ours.requests_per_second * 1000:.1f} ms at our keyword rate, which is why the latency "
        "target is measured at a constant rate instead (the open-loop table above).",
    ])
