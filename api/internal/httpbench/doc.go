// Package httpbench measures an HTTP/1.1 server the way load balancers'
// health checks use it: every request on a fresh TCP connection. It holds
// the benchmark client and two floor servers that do no handler work, so a
// benchmark can show how much of the cost per request is ours and how much
// is net/http's and the kernel's.
//
// Usage:
//
//  1. Start the server under test, or a floor: FixedHandler served by
//     net/http (net/http plus the kernel), or ServeFixed on a listener (Go's
//     network poller plus the kernel, no net/http).
//  2. Build a Config with the server address, the raw request bytes
//     (GetRequest builds a GET with "Connection: close"), the number of
//     concurrent workers and the total number of requests.
//  3. Call Run; it returns when every request was made or ctx ended.
//  4. Read Result.Rate, Result.Quantile(0.99) and Result.Failed.
//
// The client does as little as it can per request: no net/http Transport,
// no TCP keep-alive options, one reused read buffer per worker. It writes
// the request, reads until the server closes, and closes its end, as
// HAProxy's httpchk does.
package httpbench
