-- wrk script: POST one V2 inference request for the iris model (body from IRIS_BODY or default).
wrk.method = "POST"
wrk.body = os.getenv("IRIS_BODY") or
  '{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
wrk.headers["Content-Type"] = "application/json"

local non_2xx = 0
response = function(status, headers, body)
  if status ~= 200 then non_2xx = non_2xx + 1 end
end
