"""The NPS DAG's day: aggregating 1M answers, time and peak memory. Not a timed test: it prints figures.

Scenarios, each in a fresh Python process (so each has its own peak RSS):

* ``counters``: :func:`entity_etl.nps.aggregate.aggregate_day` over a list of 1M answers shaped as
  ``read_day`` returns them (dicts of plain values), built before the clock starts: the counters alone,
  and the memory they add to the list's;
* ``generator + counters``: the same answers made one at a time by a generator, never all held: the
  memory of the aggregation alone (the time adds making the answers);
* ``read_day + aggregate`` (before): what ``compute_day`` did until it streamed. ``read_day`` of
  ``lambdas/survey/responses.py`` pages through a stub DynamoDB client that builds each 1 MB page
  (``--page-items`` items in attribute-value form, as the ``SurveyDateIndex`` projects them) when it is
  asked for, and returns the whole day as a list; then the day is aggregated.
* ``iter_day + aggregate``: the same pages, parsed by the same code, through ``iter_day``, the generator
  beside ``read_day``: each page is aggregated as it arrives, the day's list is never built.
* ``compute_day's read`` (after): what ``compute_day`` does now, ``entity_etl.nps.job.read_answers``
  (``iter_day`` behind the job's error naming) into ``aggregate_day``; the reporting table is left out.

Each scenario reports its wall time, its CPU time, answers per second (by wall time) and the growth
of the process's peak RSS (``ru_maxrss``) over the scenario, and its CPU time and RSS as ratios to
the "before" scenario; with ``--tracemalloc``, a second, untimed and much slower pass also gives the
peak of Python allocations. The answers spread over ``--queues`` queues and ``--agents`` agents,
one in ten without an agent. The stub has no network and no botocore parsing: against DynamoDB a 1M
day is about 200 Query pages, whose transfer and parsing add to the read, not to the aggregation.

The figures are checked: every scenario must count the same answers and give the same NPS.

Run: ``uv run --frozen --all-extras python bench/nps_aggregate.py [--answers 1000000] [--tracemalloc]``
(about 1 min for 1M answers on 2 cores; with ``--tracemalloc`` about 6 min).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

DAY = dt.date(2026, 11, 24)
BEFORE = "read_day + aggregate"
SCENARIOS = ("counters", "generator + counters", BEFORE, "iter_day + aggregate", "compute_day's read")


def answer_values(i: int, queues: int, agents: int) -> tuple[str, str, int, str, str | None, str]:
    """(contact id, responded at, rating, queue, agent, original contact id) of answer ``i``: deterministic."""
    rating = (i * 7919) % 5 + 1
    second = i % 86_400
    at = f"{DAY.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{i % 1000:03d}Z"
    agent = None if (i // agents) % 10 == 0 else f"agent-{i % agents:04d}"  # one in ten without an agent
    return f"{i:08d}-5e0c-4c1f-9a4e-{i:012d}", at, rating, f"queue-{i % queues:03d}", agent, f"orig-{i:08d}"


def answers(count: int, queues: int, agents: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        contact, at, rating, queue, agent, original = answer_values(i, queues, agents)
        yield {
            "contact_id": contact,
            "survey_date": DAY.isoformat(),
            "responded_at": at,
            "rating": rating,
            "original_contact_id": original,
            "agent": agent,
            "queue": queue,
        }


class StubDynamoDB:
    """``query`` pages of the day in attribute-value form, built only when asked for (like a network read)."""

    def __init__(self, count: int, page_items: int, queues: int, agents: int) -> None:
        self.count, self.page_items, self.queues, self.agents = count, page_items, queues, agents
        self.calls = 0

    def query(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        start = int(request.get("ExclusiveStartKey", {}).get("n", {}).get("N", "0"))
        end = min(start + self.page_items, self.count)
        items = []
        for i in range(start, end):
            contact, at, rating, queue, agent, original = answer_values(i, self.queues, self.agents)
            item = {
                "ContactId": {"S": contact},
                "SurveyDate": {"S": DAY.isoformat()},
                "RespondedAt": {"S": at},
                "Rating": {"N": str(rating)},
                "OriginalContactId": {"S": original},
                "Queue": {"S": queue},
            }
            if agent:
                item["Agent"] = {"S": agent}
            items.append(item)
        page: dict[str, Any] = {"Items": items, "Count": len(items)}
        if end < self.count:
            page["LastEvaluatedKey"] = {"n": {"N": str(end)}}
        return page


def scenario(name: str, args: argparse.Namespace) -> Callable[[], Any]:
    from lambdas.survey.responses import iter_day, read_day

    from entity_etl.nps.aggregate import aggregate_day
    from entity_etl.nps.job import read_answers

    def stub() -> StubDynamoDB:
        return StubDynamoDB(args.answers, args.page_items, args.queues, args.agents)

    if name == "counters":
        day = list(answers(args.answers, args.queues, args.agents))
        return lambda: aggregate_day(day, day=DAY)
    if name == "generator + counters":
        return lambda: aggregate_day(answers(args.answers, args.queues, args.agents), day=DAY)
    if name == BEFORE:
        return lambda: aggregate_day(read_day("SurveyResponses", DAY, client=stub()), day=DAY)
    if name == "iter_day + aggregate":
        return lambda: aggregate_day(iter_day("SurveyResponses", DAY, client=stub()), day=DAY)
    if name == "compute_day's read":
        return lambda: aggregate_day(read_answers(day=DAY, table="SurveyResponses", client=stub()), day=DAY)
    raise SystemExit(f"unknown scenario {name!r}")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(name: str, args: argparse.Namespace) -> None:
    run = scenario(name, args)
    base = maxrss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    figures = run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = maxrss_mb() - base
    peak = None
    if args.tracemalloc:
        del figures
        tracemalloc.start()
        figures = run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    result = {
        "scenario": name,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "rss_growth_mb": rss,
        "python_peak_mb": peak,
        "responses": figures.overall.responses,
        "nps": str(figures.overall.nps),
        "csat": str(figures.overall.csat_pct),
        "queues": len(figures.queues),
        "agents": len(figures.agents),
    }
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=40)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--page-items", type=int, default=5_000, help="answers per Query page (about 1 MB)")
    parser.add_argument("--tracemalloc", action="store_true", help="also the peak of Python allocations (slow)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args)
        return 0
    print(
        f"NPS day of {args.answers:,} answers ({args.queues} queues, {args.agents} agents); Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    results = []
    for name in SCENARIOS:
        cmd = [sys.executable, __file__, "--child", name, "--answers", str(args.answers), "--queues", str(args.queues)]
        cmd += ["--agents", str(args.agents), "--page-items", str(args.page_items)]
        cmd += ["--tracemalloc"] if args.tracemalloc else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"{name}: failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    figures = {(r["responses"], r["nps"], r["csat"], r["queues"], r["agents"]) for r in results}
    if len(figures) != 1 or results[0]["responses"] != args.answers:
        raise SystemExit(f"the scenarios disagree: {figures}")
    before = next(r for r in results if r["scenario"] == BEFORE)
    print(
        f"\n{'scenario':<24} {'seconds':>8} {'CPU s':>7} {'answers/s':>11} {'peak RSS +MB':>13} "
        f"{'Python peak MB':>15} {'CPU/before':>11} {'RSS/before':>11}"
    )
    for r in results:
        python_peak = "-" if r["python_peak_mb"] is None else f"{r['python_peak_mb']:.1f}"
        rss_ratio = r["rss_growth_mb"] / before["rss_growth_mb"] if before["rss_growth_mb"] > 0 else float("nan")
        print(
            f"{r['scenario']:<24} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {args.answers / r['seconds']:>11,.0f} "
            f"{r['rss_growth_mb']:>13.1f} {python_peak:>15} {r['cpu_seconds'] / before['cpu_seconds']:>10.2f}x "
            f"{rss_ratio:>10.3f}x"
        )
    print(f"(before: {BEFORE}, the day held as a list; ratios below 1 are less than before; CPU s is the")
    print(" process's own CPU time, which other work on the machine skews less than the wall time)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    (n, nps, csat, queues, agents) = figures.pop()
    print(f"\nall scenarios: {n:,} answers, NPS {nps}, CSAT {csat}%, {queues} queues, {agents} agents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
