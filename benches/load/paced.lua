-- wrk script for benches/load/refresh-load: a proxied GET with a pause between requests on each
-- connection, so the proxy is loaded at a steady rate well below saturation and the latency
-- percentiles measure the proxy, not a queue. Argument: pause in milliseconds.
function init(args)
  pause = tonumber(args[1])
end

function delay()
  return pause
end
