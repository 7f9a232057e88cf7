-- wrk script: POST the JSON bodies of a file (one per line) in turn, count answers by status,
-- and print one machine-readable line at the end.
--   wrk -t2 -c32 -d10s --latency -s post.lua URL -- BODIES_FILE API_KEY
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = args[2]
  next_body = (id * 7919) % #bodies
  s201, s2xx, sother, last_other = 0, 0, 0, 0
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function response(status, headers, body)
  if status == 201 then
    s201 = s201 + 1
  end
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
  else
    sother = sother + 1
    last_other = status
  end
end

function done(summary, latency, requests)
  local c201, c2xx, cother, last = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    c201 = c201 + thread:get("s201")
    c2xx = c2xx + thread:get("s2xx")
    cother = cother + thread:get("sother")
    if thread:get("last_other") ~= 0 then
      last = thread:get("last_other")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "s201": %d, "s2xx": %d, "sother": %d, ' ..
    '"last_other_status": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, ' ..
    '"max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, c201, c2xx, cother, last,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
