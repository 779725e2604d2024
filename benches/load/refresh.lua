-- wrk script for benches/load/refresh-load: every connection (one per thread) rotates its own
-- refresh token at POST /token, pausing between refreshes so that the whole run makes about
-- the requested rate. Arguments: tokens file (one refresh token per line, one per thread),
-- pause in milliseconds.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  local line = 0
  for token in io.lines(args[1]) do
    line = line + 1
    if line == index then refresh_token = token end
  end
  assert(refresh_token, "fewer tokens than threads")
  pause = tonumber(args[2])
end

function request()
  return wrk.format("POST", "/token",
    { ["Host"] = "control.test", ["Content-Type"] = "application/json" },
    '{"grant_type":"refresh_token","refresh_token":"' .. refresh_token .. '"}')
end

function response(status, headers, body)
  -- The next refresh must present the successor; a failed one leaves the token spent, and
  -- every later request of this connection then counts as a non-2xx response.
  local next_token = body:match('"refresh_token":"([^"]+)"')
  if status == 200 and next_token then refresh_token = next_token end
end

function delay()
  return pause
end
