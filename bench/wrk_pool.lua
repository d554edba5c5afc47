-- wrk script: cycle through prepared requests (one "path<TAB>body" per line in BENCH_REQUESTS), for cases
-- whose body cannot be made in Lua, such as safe mode where every message is encrypted differently.
local pool = {}
local index = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 1000)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    table.insert(pool, wrk.format("POST", path, { ["Content-Type"] = "text/xml" }, body))
  end
  index = offset or 0
end

function request()
  index = index + 1
  return pool[(index % #pool) + 1]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
