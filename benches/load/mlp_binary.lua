-- wrk script: one row (256 FP32 features, the values of mlp.lua) to the MLP model named by the
-- URL with the binary tensor extension: JSON header, then 1,024 raw little-endian bytes, and
-- binary outputs asked for.
-- Little-endian FP32 bytes of ((k % 13) - 6) * 0.1 for k = 0..12 (LuaJIT has no string.pack).
local patterns = {
  "\154\153\25\191",
  "\0\0\0\191",
  "\205\204\204\190",
  "\154\153\153\190",
  "\205\204\76\190",
  "\205\204\204\189",
  "\0\0\0\0",
  "\205\204\204\61",
  "\205\204\76\62",
  "\154\153\153\62",
  "\205\204\204\62",
  "\0\0\0\63",
  "\154\153\25\63"
}
local row = {}
for i = 1, 256 do row[i] = patterns[(i % 13) + 1] end
local header = '{"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "parameters": {"binary_data_size": 1024}}], "parameters": {"binary_data_output": true}}'
wrk.method = "POST"
wrk.body = header .. table.concat(row)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)
