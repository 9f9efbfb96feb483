-- wrk script: one V2 inference request for the iris model with the binary tensor extension:
-- the JSON header, then the [1x4] FP32 input as 16 raw little-endian bytes (5.1, 3.5, 1.4, 0.2,
-- the values of iris.lua), `Inference-Header-Content-Length` giving the header's length, and
-- binary outputs asked for, as `tritonclient.http` sends with `binary_data=True`. It reports
-- non-200 answers like iris.lua.
local header = '{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}], "parameters": {"binary_data_output": true}}'
wrk.method = "POST"
wrk.body = header .. "\51\51\163\64\0\0\96\64\51\51\179\63\205\204\76\62"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)

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
end
