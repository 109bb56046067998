// Package api serves the Patroni-compatible REST API of a pgwarden node
// (spec/rest-api.md) and provides a typed client for it.
//
// Usage:
//
//  1. Give the handler a StatusSource: a non-blocking getter of the node's
//     latest published Status (ha.Node publishes one per loop iteration).
//     Every health check (GET/HEAD/OPTIONS /primary, /replica?lag=1MB,
//     /read-only, /sync, /health, /liveness, /readiness, ...) and
//     GET /patroni answers from that value alone, so a slow HA loop or a
//     hung DCS never makes a health check hang. A source that also
//     implements SharedStatusSource (hands out the published value itself)
//     lets the handler encode the status document once per published
//     Status instead of once per request.
//  2. Give it a Controller for the requests the loop carries out (restart,
//     reload, reinitialize, failsafe, shutdown, wake-up) and a DCS for the
//     fresh reads and the config/failover writes (a dcs.Store fits).
//  3. Build it with NewHandler(Config{...}) and serve it with Serve, using
//     ServerTLSConfig(restapi) for HTTPS with optional client certificates.
//  4. Record loop metrics into Handler.Metrics(); GET /metrics exposes them
//     next to Patroni's metrics.
//  5. Talk to any member (pgwarden or Patroni) with Client.
//
// Unsafe endpoints (PATCH/PUT /config, POST /restart, /reload,
// /reinitialize, /switchover, /failover, /failsafe, /sigterm, DELETE
// /restart and /switchover) run Patroni's access check: allowlist, client
// certificate, then Basic auth.
package api
