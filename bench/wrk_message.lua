-- wrk script: POST a signed WeChat message with a fresh MsgId on every request (dedupe must not short-cut).
-- BENCH_BODY: file with the XML body, %MSGID% where the id goes; BENCH_PATH: path and signed query.
-- BENCH_REPEAT=1 sends the same MsgId every time (the "retry of an answered message" case).
local counter = 0
local thread_base = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  template = file:read("*a")
  file:close()
  path = os.getenv("BENCH_PATH")
  repeat_id = os.getenv("BENCH_REPEAT") == "1"
  thread_base = (os.time() % 100000) * 100000000000 + (thread_index or 1) * 10000000000
  headers = { ["Content-Type"] = "text/xml" }
end

function request()
  counter = counter + 1
  local msgid = repeat_id and "7000000000000000001" or string.format("%d", thread_base + counter)
  local body = template:gsub("%%MSGID%%", msgid)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
