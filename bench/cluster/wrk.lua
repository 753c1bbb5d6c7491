-- wrk script for bench/cluster/run.sh: 100-byte values on random keys of a fixed
-- keyspace, against kv-server's HTTP API or etcd's v3 JSON gateway.
--
--   wrk -c64 -d10s -s wrk.lua http://127.0.0.1:PORT -- MODE [KEYSPACE] [VALUE_SIZE]
--
-- MODE: kv-put (PUT /keys/K), kv-get (GET /keys/K, linearizable), etcd-put
-- (POST /v3/kv/put), etcd-get (POST /v3/kv/range, linearizable). At the end it prints
-- one JSON line with requests, errors and latency percentiles in microseconds.

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chunk = {}
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      chunk[#chunk + 1] = b64chars:sub(k + 1, k + 1)
    end
    if not b then chunk[3] = "=" end
    if not c then chunk[4] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

local requests = {}

function init(args)
  local mode = args[1] or "kv-put"
  local keyspace = tonumber(args[2] or "1000")
  local size = tonumber(args[3] or "100")
  local value = string.rep("v", size)
  for i = 1, keyspace do
    local key = string.format("bench-%08d", i - 1)
    if mode == "kv-put" then
      requests[i] = wrk.format("PUT", "/keys/" .. key, nil, value)
    elseif mode == "kv-get" then
      requests[i] = wrk.format("GET", "/keys/" .. key)
    elseif mode == "etcd-put" then
      local body = '{"key":"' .. base64(key) .. '","value":"' .. base64(value) .. '"}'
      requests[i] = wrk.format("POST", "/v3/kv/put", nil, body)
    elseif mode == "etcd-get" then
      local body = '{"key":"' .. base64(key) .. '"}'
      requests[i] = wrk.format("POST", "/v3/kv/range", nil, body)
    else
      error("unknown mode " .. mode)
    end
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
