-- SPDX-License-Identifier: MIT
-- wrk script of the benchmark (wrk -s wrk.lua). With BENCH_POST_BYTES set in the
-- environment every request is a POST of that many bytes ('p' repeated; the same body
-- each time, so the stored data is known whatever order the writes land in); otherwise
-- wrk's own GET. At the end one machine-readable line:
--   BENCHRESULT <requests> <duration us> <p50 us> <p99 us> <connect errors>
--               <read errors> <write errors> <non-2xx> <timeouts> <bytes read>
local post_bytes = tonumber(os.getenv("BENCH_POST_BYTES") or "")
if post_bytes then
	wrk.method = "POST"
	wrk.body = string.rep("p", post_bytes)
	wrk.headers["Content-Type"] = "application/octet-stream"
end

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("BENCHRESULT %d %d %d %d %d %d %d %d %d %d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99),
		e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
