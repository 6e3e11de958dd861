-- wrk script of the ingest and read benchmarks. Configured by environment:
--   BENCH_MODE     "post" (a unique Idempotency-Key per request) or "get" (random ids)
--   BENCH_PATH     request path (post), or the prefix the ids are appended to (get)
--   BENCH_BODY     JSON body (post)
--   BENCH_HEADERS  "Name: value" lines separated by "\n"
--   BENCH_PREFIX   Idempotency-Key prefix, unique per run
--   BENCH_IDS      file with one id per line (get)
--   BENCH_EXPECT   expected status (202 for post, 200 for get)
-- done() prints one JSON line with counts and latency percentiles in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  mode = os.getenv("BENCH_MODE") or "post"
  path = os.getenv("BENCH_PATH") or "/"
  body = os.getenv("BENCH_BODY")
  prefix = os.getenv("BENCH_PREFIX") or "k"
  expect = tonumber(os.getenv("BENCH_EXPECT") or "202")
  hdrs = {}
  for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then hdrs[name] = value end
  end
  counter = 0
  unexpected = 0
  ids = {}
  if mode == "get" then
    for id in io.lines(os.getenv("BENCH_IDS")) do table.insert(ids, id) end
    math.randomseed(tid * 7919)
  end
end

function request()
  counter = counter + 1
  if mode == "get" then
    return wrk.format("GET", path .. ids[math.random(#ids)], hdrs, nil)
  end
  hdrs["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. counter
  return wrk.format("POST", path, hdrs, body)
end

function response(status, headers, body)
  if status ~= expect then unexpected = unexpected + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("unexpected") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"unexpected_status":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
