-- wrk script: send prepared requests, one "path<TAB>body" per line in BENCH_REQUESTS. Each request is
-- distinct (fresh nonce and MsgId, as WeChat sends them), and the wrk threads take disjoint slices
-- (BENCH_THREADS must equal wrk's -t: wrk runs each thread's init() right after its setup(), before the
-- next thread exists, so the count cannot be learnt from setup()).
-- With BENCH_DONE_FILE set, a thread stops once its slice is answered and notes it in that file
-- (bench/compare.py's send_pool_once then interrupts wrk): each request is sent once.
local created = 0

function setup(thread)
  thread:set("slice", created)
  thread:set("slices", tonumber(os.getenv("BENCH_THREADS")))
  created = created + 1
end

function init(args)
  pool = {}
  local line_number = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if line_number % slices == slice then
      local path, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(pool, wrk.format("POST", path, { ["Content-Type"] = "text/xml" }, body))
    end
    line_number = line_number + 1
  end
  index = 0
  answered = 0
end

function request()
  index = index + 1
  if index > #pool then index = 1 end
  return pool[index]
end

-- Defined only when needed: wrk hands every response to Lua when `response` exists, which costs.
local done_file = os.getenv("BENCH_DONE_FILE")
if done_file then
  function response(status, headers, body)
    answered = answered + 1
    if answered == #pool then
      local file = io.open(done_file, "a")
      file:write("done\n")
      file:close()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
