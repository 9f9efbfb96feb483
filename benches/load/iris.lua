-- wrk script: POST one V2 inference request for the iris model (body from IRIS_BODY or default).
-- At the end it prints how many answers of each status other than 200 came back, so a failed
-- request in a long run (benches/soak) says what it was.
wrk.method = "POST"
wrk.body = os.getenv("IRIS_BODY") or
  '{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

statuses = {}

response = function(status, headers, body)
  if status ~= 200 then statuses[status] = (statuses[status] or 0) + 1 end
end

done = function(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("  status %d: %d\n", status, count))
  end
  local e = summary.errors
  io.write(string.format("  socket errors: connect %d, read %d, write %d, timeout %d\n",
    e.connect, e.read, e.write, e.timeout))
end
