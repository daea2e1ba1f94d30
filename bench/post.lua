-- wrk script: POST a JSON chat request, print the results as one JSON line.
--
-- Environment (all optional):
--   BENCH_BODY   request body (default: a small non-streaming chat completion for model "bench")
--   BENCH_UA     User-Agent (default: "OpenAI/Python 1.40.0", which walks every routing rule)
--   BENCH_AUTH   bearer token (LiteLLM's master key); no Authorization header when unset
--
-- done() prints a line starting "BENCH_JSON " with counts, errors and latency
-- percentiles in microseconds; bench/run.py parses it.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
    or '{"model":"bench","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = os.getenv("BENCH_UA") or "OpenAI/Python 1.40.0"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. auth
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"latency_us":{"min":%.1f,"mean":%.1f,"max":%.1f,"stdev":%.1f,'
            .. '"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.min, latency.mean, latency.max, latency.stdev,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9)))
end
