-- wrk script for `make bench` (tests/bench/load.py runs it):
--   wrk -t2 -c8 -d8s --latency -s stream.lua URL -- TEMPLATES RUN
-- TEMPLATES: a Lua file returning the stream's request templates (tests/bench/load.py writes
-- it); RUN: an id unique to this wrk run. Each request is the next template, its placeholders
-- filled in: @ID@
-- with a token unique to the request (run, thread, counter), @N@ with the thread's counter.
-- Every answer's status is checked (wrk itself only counts >= 400 as errors) and khook's
-- X-Khook-Outcome counts are summed; done() prints one JSON line, prefixed KHOOK-BENCH.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local templates, prefix, counter, offset

answers, non202, fired, duplicate, held, followup, failed, stale = 0, 0, 0, 0, 0, 0, 0, 0

function init(args)
  templates = dofile(args[1])
  prefix = "r" .. args[2] .. "t" .. tid .. "n"
  counter = 0
  -- Threads start at different places in the sequence, as different senders would.
  offset = ((tid - 1) * 37) % #templates
end

function request()
  counter = counter + 1
  local t = templates[(counter + offset) % #templates + 1]
  local token = prefix .. counter
  local headers = {}
  for name, value in pairs(t.headers) do
    headers[name] = (value:gsub("@ID@", token))
  end
  local body = t.body:gsub("@ID@", token):gsub("@N@", tostring(counter))
  return wrk.format("POST", "/", headers, body)
end

local function count(outcome, name)
  local n = outcome:match(name .. "=(%d+)")
  return n and tonumber(n) or 0
end

function response(status, headers, body)
  answers = answers + 1
  if status ~= 202 then
    non202 = non202 + 1
  end
  local outcome = headers["x-khook-outcome"] or headers["X-Khook-Outcome"]
  if outcome then
    fired = fired + count(outcome, "fired")
    duplicate = duplicate + count(outcome, "duplicate")
    held = held + count(outcome, "held")
    followup = followup + count(outcome, "followup")
    failed = failed + count(outcome, "failed")
    stale = stale + count(outcome, "stale")
  end
end

function done(summary, latency, requests)
  local sums = {answers = 0, non202 = 0, fired = 0, duplicate = 0, held = 0, followup = 0,
                failed = 0, stale = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(sums) do
      sums[name] = sums[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'KHOOK-BENCH {"requests":%d,"duration_us":%d,"answers":%d,"non202":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"outcomes":{"fired":%d,"duplicate":%d,"held":%d,"followup":%d,"failed":%d,"stale":%d}}\n',
    summary.requests, summary.duration, sums.answers, sums.non202,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean,
    sums.fired, sums.duplicate, sums.held, sums.followup, sums.failed, sums.stale))
end
