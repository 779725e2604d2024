-- How to run: wrk -t2 -c64 -d10s -s benches/load/post-64k.lua http://127.0.0.1:18083/upload
-- Every request is a POST with a 64 KiB body (benches/load/variants' req64k variant). Built once:
-- wrk.format() adds the Content-Length, and a fixed request costs wrk no Lua call per request.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
