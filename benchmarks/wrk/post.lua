-- POSTs the JSON body in $WRK_BODY_FILE. Every "%R:lo:hi%" in it is replaced, per request, by
-- a fresh random number between lo and hi, so each request is a fresh random wine (a cache
-- miss); a body without placeholders is sent unchanged (cache hits). The generator is seeded
-- per run and per thread, so a repeated run against the same Redis still misses. Prints one
-- JSON line of figures when done.
local template
local dynamic = false

function init(args)
  local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "r"))
  template = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("WRK_API_KEY")
  if key and key ~= "" then wrk.headers["X-API-Key"] = key end
  dynamic = template:find("%R:", 1, true) ~= nil
  if not dynamic then wrk.body = template end
  local seed = tonumber(os.getenv("WRK_SEED") or "") or os.time()
  math.randomseed(seed + math.floor(os.clock() * 1e6))
end

local function random_between(lo, hi)
  return string.format("%.9f", tonumber(lo) + math.random() * (tonumber(hi) - tonumber(lo)))
end

function request()
  if dynamic then
    return wrk.format(nil, nil, nil, (template:gsub("%%R:([%d%.]+):([%d%.]+)%%", random_between)))
  end
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
