"""``make bench``: khook measured, never asserted (timings stay out of pass/fail tests).

Side by side in one run: khook against the bare functions-framework function on the same
streams and server settings, cold start, memory after 100,000 events, new incident -> agent
call per store, store decisions, per-stage timings. ``python -m tests.bench --help``.

Modules: streams (the request templates), load (wrk and its Lua script; loadgen, the fallback),
servers and bare (the processes under load), rounds (HTTP side by side), coldstart,
memory_rss, agentcall, stores, stages, timing, report (machine, targets, table).
"""
