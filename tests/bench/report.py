"""The machine, the targets, and the table: all read from the JSON document the bench writes,
so the table and the file always hold the same numbers."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.servers import BARE, KHOOK_FF, KHOOK_SERVE
from tests.bench.stages import STAGES

KHOOKS = (KHOOK_FF, KHOOK_SERVE)
STREAM_TITLES = {
    "nothing": "nothing of interest",
    "realistic": "realistic (85/10/5)",
    "storm": "storm (registry 503)",
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    wrk = ""
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        wrk = (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0]
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": wrk or None,
        "load_average_before": load_average(),
    }


def _target(
    name: str, value: float | None, limit: float, unit: str, ok: bool | None
) -> dict[str, Any]:
    status = "n/a" if value is None else ("INVALID" if ok is None else ("PASS" if ok else "MISS"))
    return {"target": name, "value": value, "limit": limit, "unit": unit, "status": status}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    http = doc.get("http", {})
    for kind in KHOOKS:
        for stream, floor in (("realistic", 0.90), ("nothing", 0.95)):
            side = http.get(stream)
            if side is None or kind not in side:
                continue
            valid = all(side[k]["non202"] == 0 and side[k]["errors"] == 0 for k in (BARE, kind))
            ratio = side["ratio"][kind]
            name = f"{STREAM_TITLES[stream]}: {kind} throughput >= {floor:.2f}x bare"
            out.append(_target(name, ratio, floor, "x", ratio >= floor if valid else None))
            if stream == "realistic":
                over = round(side[kind]["p99_ms"] - side[BARE]["p99_ms"], 2)
                name = f"realistic: {kind} p99 <= bare p99 + 2 ms"
                out.append(_target(name, over, 2.0, "ms", over <= 2.0 if valid else None))
    calls = doc.get("agent_call", {})
    for store, limit in (("memory", 5.0), ("tinydb", 10.0)):
        if store in calls:
            p99 = round(calls[store]["to_call"]["p99_us"] / 1000, 2)
            name = f"new incident -> agent call sent, p99, {store} ({calls[store]['filled']})"
            out.append(_target(name, p99, limit, "ms", p99 <= limit))
    for kind in KHOOKS:
        if kind in doc.get("coldstart", {}):
            median = doc["coldstart"][kind]["median_s"]
            name = f"cold start to first 202, median, {kind}"
            out.append(_target(name, median, 1.0, "s", median <= 1.0))
    if KHOOK_FF in doc.get("rss", {}):
        rss = doc["rss"][KHOOK_FF]
        total = rss["master_plus_worker_rss_mb"]
        name = f"RSS after {rss['events']:,} events, master + worker"
        out.append(
            _target(name, total, 120.0, "MB", total <= 120.0 if rss["non202"] == 0 else None)
        )
    return out


def _ms(us: float) -> str:
    return f"{us / 1000:8.3f}"


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def _http(doc: dict[str, Any]) -> list[str]:
    kinds = [k for k in (BARE, *KHOOKS) if k in next(iter(doc["http"].values()))]
    lines = ["HTTP, side by side (same stream, same server settings)"]
    lines.append(f"  {'':34}" + "".join(f"{k:>14}" for k in kinds))
    for stream, side in doc["http"].items():
        lines.append(f"  {STREAM_TITLES[stream]}")
        for label, fmt, key in (
            ("requests/s (mean of rounds)", "{:14,.0f}", "rate"),
            ("p50 ms (median of rounds)", "{:14.2f}", "p50_ms"),
            ("p99 ms (median of rounds)", "{:14.2f}", "p99_ms"),
            ("non-202 answers", "{:14}", "non202"),
            ("socket errors and timeouts", "{:14}", "errors"),
        ):
            lines.append(f"    {label:32}" + "".join(fmt.format(side[k][key]) for k in kinds))
            if key == "rate":
                ratios = "".join(f"{side['ratio'].get(k, 1.0):14.3f}" for k in kinds)
                lines.append(f"    {'ratio to bare':32}{ratios}")
                spread = side.get("round_ratios", {})
                ranges = "".join(
                    f"{_range(spread[k]):>14}" if spread.get(k) else f"{'':14}" for k in kinds
                )
                lines.append(f"    {'  each round (lowest-highest)':32}{ranges}")
        for kind in KHOOKS:
            if kind in side:
                counts = side[kind]["outcomes"]
                shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
                lines.append(f"    {kind} outcomes: {shown or 'none acted on'}")
                if side[kind]["non202"] or side[BARE]["non202"]:
                    lines.append("    INVALID: answers other than 202; see the JSON's rounds")
    return lines


def _coldstart(doc: dict[str, Any]) -> list[str]:
    runs = len(next(iter(doc["coldstart"].values()))["runs"])
    lines = [
        f"Cold start: Popen to the first 202 (a new incident), {runs} run(s)",
        f"  {'':34}  median     max",
    ]
    for kind, c in doc["coldstart"].items():
        lines.append(f"  {kind:34}{c['median_s']:7.3f} s{c['max_s']:7.3f} s")
    return lines


def _rss(doc: dict[str, Any]) -> list[str]:
    kinds = list(doc["rss"])
    events = doc["rss"][kinds[-1]]["events"]
    lines = [
        f"Memory, MB (10^6 bytes): at start, after {events:,} events of the realistic stream",
        f"  {'':34}" + "".join(f"{k + ' start':>14}{k + ' after':>14}" for k in kinds),
    ]
    labels = {
        "master_rss": "gunicorn master, VmRSS",
        "worker_rss": "worker, VmRSS",
        "worker_peak_rss": "worker, peak (VmHWM)",
        "sandbox_rss": "render processes, VmRSS",
        "all_rss": "all, VmRSS sum",
        "all_pss": "all, PSS sum (shared pages once)",
    }
    for key, label in labels.items():
        cells = [
            f"{doc['rss'][k]['start_mb'][key]:14.1f}{doc['rss'][k]['after_mb'][key]:14.1f}"
            for k in kinds
        ]
        lines.append(f"  {label:34}" + "".join(cells))
    sums = [f"{'':14}{doc['rss'][k]['master_plus_worker_rss_mb']:14.1f}" for k in kinds]
    lines.append(f"  {'master + worker, VmRSS':34}" + "".join(sums))
    return lines


def _timings(title: str, groups: dict[str, list[tuple[str, dict[str, Any]]]]) -> list[str]:
    lines = [title, f"  {'':56}   p50 ms   p99 ms"]
    for group, rows in groups.items():
        lines.append(f"  {group}")
        lines += [f"    {label:54} {_ms(t['p50_us'])} {_ms(t['p99_us'])}" for label, t in rows]
    return lines


def _stores(doc: dict[str, Any]) -> list[str]:
    groups = {
        f"{store} ({r['filled']})": list(r["timings"].items()) for store, r in doc["stores"].items()
    }
    lines = _timings("Store decisions (Deduplicator.claim: read, decide, write)", groups)
    for store, r in doc["stores"].items():
        extra = {k: v for k, v in r.items() if k not in ("filled", "timings")}
        lines.append(f"  {store}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    return lines


def _agent(doc: dict[str, Any]) -> list[str]:
    groups = {
        f"{store} ({c['filled']})": [
            ("process_event start -> agent called", c["to_call"]),
            ("whole process_event (+ the confirm write)", c["whole"]),
        ]
        for store, c in doc["agent_call"].items()
    }
    return _timings("New incident -> agent call sent (in process, the agent excluded)", groups)


def _stages(doc: dict[str, Any]) -> list[str]:
    kinds = list(doc["stages"])
    stages = [s for s in STAGES if any(s in per for per in doc["stages"].values())]
    lines = [
        "Pipeline stages, in process, us (p50 / p99)",
        f"  {'':12}" + "".join(f"{k:>22}" for k in kinds),
    ]
    for stage in stages:
        cells = []
        for kind in kinds:
            t = doc["stages"][kind].get(stage)
            cell = f"{t['p50_us']:.1f} / {t['p99_us']:.1f}" if t else "-"
            cells.append(f"{cell:>22}")
        lines.append(f"  {stage:12}" + "".join(cells))
    for label, t in doc.get("metrics_costs", {}).items():
        lines.append(f"  {label}: p50 {t['p50_us']:.1f} us, p99 {t['p99_us']:.1f} us")
    return lines


def _header(doc: dict[str, Any]) -> list[str]:
    m, plan = doc["machine"], doc["plan"]
    quick = " (--quick: checks the harness, not a measurement)" if plan["quick"] else ""
    generator = f"{plan['generator']} ({m['wrk'] or 'built-in asyncio generator'})"
    image = " ".join(f"{k}={v}" for k, v in plan["image_env"].items())
    khook = " ".join(f"{k}={v}" for k, v in plan["khook_env"].items())
    lines = [
        f"khook bench, {m['when']}{quick}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}",
        f"load average: {m['load_average_before']} before, {m.get('load_average_after')} after",
    ]
    if "http" in doc or "rss" in doc:
        lines.append(
            f"load: {generator}, {plan['connections']} connections, {plan['threads']} threads; "
            f"{plan['rounds']} round(s) of {plan['seconds']:g} s per server, alternating, after "
            f"{plan['warmup_seconds']:g} s of warm-up"
        )
    if {"http", "rss", "coldstart"} & set(doc):
        lines.append(f"servers: {image} (Containerfile ENV)")
        lines.append(f"khook: {khook}, log level {plan['khook_log_level']}")
    return lines


def table(doc: dict[str, Any]) -> str:
    plan = doc["plan"]
    lines = _header(doc)
    if plan.get("note"):
        lines.append(f"NOTE: {plan['note']}")
    sections = (
        ("http", _http),
        ("coldstart", _coldstart),
        ("rss", _rss),
        ("agent_call", _agent),
        ("stores", _stores),
        ("stages", _stages),
    )
    for key, render in sections:
        if key in doc:
            lines += ["", *render(doc)]
    if doc["targets"]:
        lines += ["", "Targets"]
        for t in doc["targets"]:
            value = "-" if t["value"] is None else f"{t['value']:g} {t['unit']}"
            lines.append(
                f"  {t['status']:8}{t['target']:72}{value:>12}  (limit {t['limit']:g} {t['unit']})"
            )
    return "\n".join(lines)
