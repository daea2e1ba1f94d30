"""The report: each target met or missed, and the Markdown the run prints and saves."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import CHAT, UA, fmt
from measure import Bench

RPS_TIMES_LITELLM = 25  # the router's requests/s at 16 connections, in LiteLLM's


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def evaluate(b: Bench) -> dict[str, Any]:
    r = b.results
    t: dict[str, Any] = {}
    wrk = r.get("wrk", {})
    if "router" in wrk and "direct" in wrk:
        added = wrk["router"]["c1"]["p50_ms"] - wrk["direct"]["c1"]["p50_ms"]
        t["p50_added_c1"] = {"value_ms": added, "limit_ms": 0.5, "met": added <= 0.5}
    if "router" in wrk and "litellm" in wrk:
        times = wrk["router"]["c16"]["rps"] / wrk["litellm"]["c16"]["rps"]
        t["rps_vs_litellm"] = {
            "value": times,
            "limit": RPS_TIMES_LITELLM,
            "met": times >= RPS_TIMES_LITELLM,
        }
    if "router" in wrk and "nginx" in wrk:
        share = wrk["router"]["c16"]["rps"] / wrk["nginx"]["c16"]["rps"]
        t["rps_share_c16"] = {"value": share}  # reported, not a target
    ttfc = r.get("ttfc", {})
    if ttfc.get("router", {}).get("p50") is not None and ttfc.get("direct", {}).get("p50"):
        added = ttfc["router"]["p50"] - ttfc["direct"]["p50"]
        t["ttfc_added"] = {"value_ms": added, "limit_ms": 1.0, "met": added <= 1.0}
    pacing = r.get("pacing", {})
    if "router" in pacing:
        p = pacing["router"]
        t["no_batching"] = {
            "batched_reads": p["batched_reads"],
            "max_events_per_read": p["max_events_per_read"],
            "met": p["batched_reads"] == 0 and p["streams"] > 0,
        }
    mem = r.get("memory", {}).get("router")
    if mem:
        parts = {
            "no_errors": mem["error_count"] == 0,
            "rss_under_200mb": mem["rss_peak_mib"] * 1.048576 < 200,  # MiB -> MB
            "rss_fell_after": mem["rss_fell"],
        }
        raised = (mem.get("pool") or {}).get("raised_to")
        t["streams_memory"] = {
            "errors": mem["error_count"],
            "rss_open_mib": mem["rss_open_mib"],
            "rss_peak_mib": mem["rss_peak_mib"],
            "rss_after_mib": mem["rss_after_mib"],
            "parts": parts,
            "pool_raised_to": raised,
            "pool_configured": (mem.get("pool") or {}).get("configured"),
            # A pass that needed a bigger pool than shipped is not a pass of the router as shipped.
            "met": all(parts.values()) and not raised,
        }
    return t


def summary_rows(targets: dict[str, Any], n: int) -> list[tuple[str, str, str]]:
    def get(key: str, field_: str) -> Any:
        return targets.get(key, {}).get(field_)

    share = get("rps_share_c16", "value")
    times = get("rps_vs_litellm", "value")
    mem = targets.get("streams_memory")
    if mem:
        measured = (
            f"{mem['errors']} errors, peak {mem['rss_peak_mib'] * 1.048576:.0f} MB, "
            f"{'fell' if mem['parts']['rss_fell_after'] else 'did not fall'} after"
        )
        if mem.get("pool_raised_to"):
            measured += f"; needed MEMORY_ROUTER_MAX_CONNECTIONS={mem['pool_raised_to']}"
    else:
        measured = "n/a"
    batching = targets.get("no_batching")
    return [
        (
            "router adds ≤ 0.5 ms p50 at 1 connection",
            f"+{fmt(get('p50_added_c1', 'value_ms'))} ms",
            "p50_added_c1",
        ),
        (
            f"router ≥ {RPS_TIMES_LITELLM} times LiteLLM's req/s at 16 connections",
            f"{fmt(times, 1)} times (and {fmt(share * 100 if share is not None else None, 1)}% "
            "of nginx's, reported)",
            "rps_vs_litellm",
        ),
        (
            "router adds ≤ 1 ms to the first chunk",
            f"+{fmt(get('ttfc_added', 'value_ms'))} ms",
            "ttfc_added",
        ),
        (
            "no chunk batched",
            f"{batching['batched_reads']} batched reads" if batching else "n/a",
            "no_batching",
        ),
        (f"{n:,} streams: no errors, RSS < 200 MB, falling after", measured, "streams_memory"),
    ]


def table_rows(
    targets: list[str],
    data: dict[str, Any],
    row: Callable[[str, Any], str],
    missing: str,
) -> list[str]:
    """One row per target: ``row(target, its data)``, or ``| target | missing |`` when it
    has none."""
    return [row(t, data[t]) if data.get(t) else f"| {t} | {missing} |" for t in targets]


def markdown(b: Bench, meta: dict[str, Any], targets: dict[str, Any]) -> str:
    r = b.results
    lines: list[str] = []
    w = lines.append
    mode = "quick" if b.args.quick else "full"
    w(f"# memory-router benchmark ({mode} run, {meta['date']})")
    w("")
    w(
        f"Machine: {meta['cpus']} CPU(s), {meta['cpu_model']}; {meta['os']}. "
        "**Load generator and servers share these cores**, so absolute numbers are low and "
        "noisy: compare within a run, as ratios."
    )
    w(
        f"Versions: memory-router {meta['versions'].get('memory-router')}, Python "
        f"{meta['python']}, uvicorn {meta['versions'].get('uvicorn')}, httpx "
        f"{meta['versions'].get('httpx')}, {meta['nginx']}, {meta['wrk']}, LiteLLM "
        f"{meta['versions'].get('litellm', 'not run')}."
    )
    w(
        f"wrk `-t{b.args.wrk_threads}`, {b.args.duration:g} s per run, POST {CHAT} with a small "
        f"JSON body, User-Agent `{UA}`. nginx: 1 worker process each (upstream, proxy); router: "
        "1 process, its defaults (log level WARNING)."
    )
    w("")
    w("| Path | What it is |")
    w("| --- | --- |")
    w("| direct | the upstream itself (nginx static JSON; for streams the paced Python upstream) |")
    w("| nginx | nginx reverse proxy, keep-alive upstream, `proxy_buffering off` |")
    w("| router | memory-router (CLI, default settings) |")
    for name, router in b.routers.items():
        if name != "router":
            w(f"| {name} | another router build: `{' '.join(router.command)}` |")
    w("| litellm | LiteLLM proxy, master key, no DB, shipped `litellm/config.yaml` settings |")
    w("")

    wrk = r.get("wrk", {})
    tg = targets.get("p50_added_c1", {})
    w("## 1. Latency, 1 connection: router adds ≤ 0.5 ms at p50 vs direct")
    w("")
    w("| Path | p50 ms | p99 ms | added p50 vs direct, ms | req/s |")
    w("| --- | --- | --- | --- | --- |")

    def latency_row(t: str, runs: dict[str, Any]) -> str:
        c1 = runs["c1"]
        added = c1["p50_ms"] - wrk["direct"]["c1"]["p50_ms"]
        return (
            f"| {t} | {fmt(c1['p50_ms'])} | {fmt(c1['p99_ms'])} | {fmt(added)} "
            f"| {c1['rps']:.0f} |"
        )

    lines += table_rows(b.targets, wrk, latency_row, "n/a | n/a | n/a | n/a")
    w("")
    w(f"Target: {verdict(tg.get('met'))} (router adds {fmt(tg.get('value_ms'))} ms).")
    w("")
    tg = targets.get("rps_vs_litellm", {})
    w(f"## 2. Throughput, 16 connections: router ≥ {RPS_TIMES_LITELLM} times LiteLLM's requests/s")
    w("")
    w("| Path | req/s | p50 ms | p99 ms | % of nginx req/s | router CPU µs per request |")
    w("| --- | --- | --- | --- | --- | --- |")

    def throughput_row(t: str, runs: dict[str, Any]) -> str:
        c16 = runs["c16"]
        share = 100 * c16["rps"] / wrk["nginx"]["c16"]["rps"]
        cpu = fmt(c16["cpu_us"], 0) if "cpu_us" in c16 else "n/a"
        return (
            f"| {t} | {c16['rps']:.0f} | {fmt(c16['p50_ms'])} | {fmt(c16['p99_ms'])} "
            f"| {share:.1f}% | {cpu} |"
        )

    lines += table_rows(b.targets, wrk, throughput_row, "n/a | n/a | n/a | n/a")
    w("")
    times = tg.get("value")
    share = targets.get("rps_share_c16", {}).get("value")
    w(
        f"Target: {verdict(tg.get('met'))} (router at {fmt(times, 1)} times LiteLLM's requests/s, "
        f"and {fmt(share * 100 if share else None, 1)}% of nginx's)."
    )
    sse = r.get("wrk_sse", {})
    if sse:
        w("")
        w(
            "Also, a 100-event SSE body (17 KB, served at once by nginx) at 16 connections: "
            + ", ".join(
                f"{t} {sse[t]['rps']:.0f} req/s (p50 {sse[t]['p50_ms']:.2f} ms)" for t in sse
            )
            + "."
        )
    w("")
    ttfc = r.get("ttfc", {})
    tg = targets.get("ttfc_added", {})
    w("## 3. Time to first chunk: router adds ≤ 1 ms")
    w("")
    w(
        "Short streams (first event at once, then `[DONE]` 10 ms later) on a kept-alive "
        "connection, interleaved across paths; time from request sent to first event received."
    )
    w("")
    w("| Path | samples | p50 ms | p90 ms | p99 ms | added p50 vs direct, ms |")
    w("| --- | --- | --- | --- | --- | --- |")

    def first_chunk_row(t: str, s: dict[str, Any]) -> str:
        added = s["p50"] - ttfc["direct"]["p50"]
        return (
            f"| {t} | {s['n']} | {fmt(s['p50'])} | {fmt(s['p90'])} | {fmt(s['p99'])} "
            f"| {fmt(added)} |"
        )

    sampled = {t: s for t, s in ttfc.items() if s and s["n"]}
    lines += table_rows(b.targets, sampled, first_chunk_row, "0 | n/a | n/a | n/a | n/a")
    w("")
    w(f"Target: {verdict(tg.get('met'))} (router adds {fmt(tg.get('value_ms'))} ms).")
    w("")
    pacing = r.get("pacing", {})
    tg = targets.get("no_batching", {})
    w(f"## 4. Chunk pacing: {b.args.chunks} events {b.args.gap_ms:g} ms apart, no chunk batched")
    w("")
    w(
        "A read that completes more than one event means the path held a chunk back and sent "
        "it with the next one."
    )
    w("")
    w(
        "| Path | streams | events/stream | max events per read | batched reads "
        "| gap p50 ms | gap p99 ms | gap max ms | first chunk p50 ms |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def pacing_row(t: str, p: dict[str, Any]) -> str:
        g = p["gap_ms"]
        ev = "/".join(str(e) for e in p["events_per_stream"])
        return (
            f"| {t} | {p['streams']} | {ev} | {p['max_events_per_read']} | {p['batched_reads']} "
            f"| {fmt(g['p50'])} | {fmt(g['p99'])} | {fmt(g['max'])} "
            f"| {fmt(p['first_chunk_ms']['p50'])} |"
        )

    lines += table_rows(b.targets, pacing, pacing_row, "0" + " | n/a" * 7)
    w("")
    w(f"Target: {verdict(tg.get('met'))}.")
    w("")
    mems = r.get("memory", {})
    mem = mems.get("router")
    tg = targets.get("streams_memory", {})
    n = mem["streams"] if mem else b.args.streams
    w(f"## 5. {n:,} concurrent open streams: no errors, RSS < 200 MB and falling after")
    w("")
    w(
        "Streams through the router to an upstream that sends one event and then holds the "
        "stream open until released; router resident set from `/proc/<pid>/status`."
    )
    w("")
    w(
        "| Path | streams opened | finished | errors | RSS idle MiB | RSS open MiB "
        "| RSS peak MiB | RSS after close MiB | fell after |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def memory_row(t: str, m: dict[str, Any]) -> str:
        errs = m["error_count"]
        detail = f" ({', '.join(f'{k}: {v}' for k, v in m['errors'].items())})" if errs else ""
        return (
            f"| {t} | {m['opened']} | {m['finished']} | {errs}{detail} "
            f"| {m['rss_idle_mib']:.1f} | {m['rss_open_mib']:.1f} | {m['rss_peak_mib']:.1f} "
            f"| {m['rss_after_mib']:.1f} | {'yes' if m['rss_fell'] else 'no'} |"
        )

    lines += table_rows(b.targets, mems, memory_row, "n/a" + " | n/a" * 7)
    w("")
    w(
        "Only the routers are measured here (direct, nginx and LiteLLM hold no per-stream "
        "state this bench is about)."
    )
    if mem:
        w(
            f"Router in-flight gauge: {mem['router_in_flight_open']:.0f} while open, "
            f"{mem['router_in_flight_after']:.0f} after; all {n} opened in "
            f"{mem['open_seconds']:.1f} s. RSS after close, by seconds: "
            + ", ".join(f"{d:g} s {v:.1f} MiB" for d, v in mem["rss_after_series_mib"])
            + "."
        )
    w("")
    if tg:
        p = tg["parts"]
        detail = (
            f"errors {'0' if p['no_errors'] else tg['errors']}; "
            f"peak RSS {tg['rss_peak_mib'] * 1.048576:.0f} MB "
            f"({'under' if p['rss_under_200mb'] else 'over'} 200 MB); "
            f"RSS {'fell' if p['rss_fell_after'] else 'did not fall'} after the streams closed"
        )
        if tg.get("pool_raised_to"):
            detail += (
                f"; only with MEMORY_ROUTER_MAX_CONNECTIONS={tg['pool_raised_to']}: the shipped "
                f"limit ({tg['pool_configured']}) refuses streams beyond it"
            )
        w(f"Target: {verdict(tg.get('met'))} ({detail}).")
    else:
        w("Target: n/a.")
    w("")
    prof = r.get("profile")
    if prof and prof.get("top_self"):
        w(f"## Profile: router under wrk, 16 connections ({prof['seconds']:g} s, py-spy)")
        w("")
        others = prof.get("other_thread_samples") or {}
        w(
            f"{prof['samples']} main-thread samples at {prof['rate_hz']} Hz; percentages are "
            "of those (the event loop does all request handling). Flame graph: "
            f"`{prof.get('flamegraph_file', 'n/a')}`; collapsed stacks (open in "
            f"speedscope.app): `{prof.get('raw_file', 'n/a')}`."
            + (
                " Other threads, left out (idle waits py-spy sampled as busy): "
                + ", ".join(f"{k} {v}" for k, v in others.items())
                + " samples."
                if others
                else ""
            )
        )
        w("")
        w(
            "Self time by package: "
            + ", ".join(f"{p['function']} {p['pct']:.0f}%" for p in prof.get("self_by_package", []))
            + "."
        )
        w("")
        # Entry frames (module, main, uvicorn's loop) are ~100% total: show what is below them.
        below = [t for t in prof["top_total"] if t["pct"] < 90.0]
        w("| Top self time | % | | Top total time (below the entry frames) | % |")
        w("| --- | --- | --- | --- | --- |")
        for s, tt in zip(prof["top_self"][:12], below[:12], strict=False):
            w(f"| `{s['function']}` | {s['pct']:.1f} | | `{tt['function']}` | {tt['pct']:.1f} |")
        w("")
    w("## Summary")
    w("")
    w("| Target | Measured | Result |")
    w("| --- | --- | --- |")
    for label, measured, key in summary_rows(targets, n):
        w(f"| {label} | {measured} | {verdict(targets.get(key, {}).get('met'))} |")
    w("")
    if b.notes:
        w("Notes:")
        w("")
        for note in b.notes:
            w(f"- {note}")
        w("")
    if b.errors:
        w(f"**Errors ({len(b.errors)}):**")
        w("")
        for e in b.errors:
            w(f"- {e}")
        w("")
    return "\n".join(lines)


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine_cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def collect_meta(args: argparse.Namespace, litellm: Path | None) -> dict[str, Any]:
    versions = {}
    for dist in ("memory-router", "uvicorn", "httpx", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    if litellm is not None and not args.quick and not args.skip_litellm:
        py = litellm.parent / "python"
        versions["litellm"] = tool_version(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
        )
    cpu_model = machine_cpu_model()
    wrk_v = tool_version([args.wrk, "--version"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "nginx": tool_version([args.nginx, "-v"]).replace("nginx version: ", ""),
        "wrk": " ".join(wrk_v.split()[:2]),
        "mode": "quick" if args.quick else "full",
        "settings": {
            "duration_s": args.duration,
            "wrk_threads": args.wrk_threads,
            "streams": args.streams,
            "ttfc_samples": args.ttfc_samples,
            "pacing_streams": args.pacing_streams,
            "chunks": args.chunks,
            "gap_ms": args.gap_ms,
        },
    }
