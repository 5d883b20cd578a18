-- POSTs a fixed JSON header followed by one binary row from a pool: the Open Inference
-- Protocol's binary tensor data extension. $WRK_HEADER_FILE holds the JSON part (sent with
-- Inference-Header-Content-Length), $WRK_POOL_FILE rows of $WRK_ROW_BYTES bytes each, made
-- fresh and random for every run (benchmarks/load.py), so every request is a new wine.
local header, pool, row_bytes, rows, next_row

function init(args)
  local f = assert(io.open(os.getenv("WRK_HEADER_FILE"), "rb")); header = f:read("*a"); f:close()
  f = assert(io.open(os.getenv("WRK_POOL_FILE"), "rb")); pool = f:read("*a"); f:close()
  row_bytes = tonumber(os.getenv("WRK_ROW_BYTES"))
  rows = math.floor(#pool / row_bytes)
  next_row = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = tostring(#header)
  local key = os.getenv("WRK_API_KEY")
  if key and key ~= "" then wrk.headers["X-API-Key"] = key end
end

function request()
  local start = next_row * row_bytes
  next_row = (next_row + 1) % rows
  return wrk.format(nil, nil, nil, header .. pool:sub(start + 1, start + row_bytes))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
