-- wrk script: POST one row (256 FP32 features) to the MLP model named by the URL.
wrk.method = "POST"
local values = {}
for i = 1, 256 do values[i] = string.format("%.3f", ((i % 13) - 6) * 0.1) end
wrk.body = '{"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [' ..
  table.concat(values, ", ") .. ']}]}'
wrk.headers["Content-Type"] = "application/json"
