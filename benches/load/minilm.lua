-- wrk script: POST a batch of 32 sentences (benches/load/minilm.json) to the MiniLM model.
wrk.method = "POST"
local file = assert(io.open("benches/load/minilm.json", "r"))
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
