-- Random HTTP announces for wrk (keep-alive, HTTP/1.1):
--
--   wrk -t1 -c64 -d10s -s scripts/wrk-announce.lua http://127.0.0.1:PORT
--
-- Each request: an info_hash drawn uniformly from a fixed pool of torrents
-- (the same pool in every thread and every run), a fresh random peer_id,
-- a random port, left (0, a seeder, one time in four), uploaded and
-- downloaded, compact=1. Bytes are percent-encoded the way clients do it:
-- unreserved characters as they are, every other byte as %XX.
--
-- Environment: WRK_TORRENTS (pool size, default 10000), WRK_PATH (default
-- /announce), WRK_CHECK=1 checks every answer (a bencoded dictionary with
-- peers and no failure reason) and prints "check: N ok, M failed" at the
-- end. The check makes wrk parse every body, so leave it off when measuring.

local torrents = tonumber(os.getenv("WRK_TORRENTS") or "10000")
local path = os.getenv("WRK_PATH") or "/announce"
local random, char, concat, format = math.random, string.char, table.concat, string.format

local enc = {}
for b = 0, 255 do
  local c = char(b)
  enc[b] = c:find("^[A-Za-z0-9._~-]$") and c or format("%%%02X", b)
end

local function random_encoded(n)
  local t = {}
  for i = 1, n do t[i] = enc[random(0, 255)] end
  return concat(t)
end

-- The pool comes from a fixed seed; the requests from a per-thread one.
math.randomseed(20261121)
local pool = {}
for i = 1, torrents do pool[i] = random_encoded(20) end

local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  for _ = 1, 10 do random() end
end

function request()
  local left = random(4) == 1 and 0 or random(1, 4000000000)
  return wrk.format("GET", format(
    "%s?info_hash=%s&peer_id=-WK0001-%s&port=%d&uploaded=%d&downloaded=%d&left=%d&compact=1",
    path, pool[random(torrents)], random_encoded(12), random(1025, 65535),
    random(0, 1000000000), random(0, 1000000000), left))
end

if os.getenv("WRK_CHECK") then
  ok, failed, sample = 0, 0, ""
  function response(status, headers, body)
    if status == 200 and body:sub(1, 1) == "d" and body:find("5:peers", 1, true)
        and not body:find("failure reason", 1, true) then
      ok = ok + 1
    else
      failed = failed + 1
      if sample == "" then sample = status .. " " .. body:sub(1, 200) end
    end
  end

  function done(summary, latency, requests)
    local n_ok, n_failed, first = 0, 0, ""
    for _, t in ipairs(threads) do
      n_ok, n_failed = n_ok + t:get("ok"), n_failed + t:get("failed")
      if first == "" then first = t:get("sample") end
    end
    io.write(format("check: %d ok, %d failed", n_ok, n_failed))
    if first ~= "" then io.write(" (first failure: ", first:gsub("%c", "."), ")") end
    io.write("\n")
  end
end
