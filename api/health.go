package api

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/dcs"
)

// leaderOptime is max(/status optime, WAL receiver latest_end_lsn).
func (v *view) leaderOptime() dcs.LSN {
	var o dcs.LSN
	if v.cluster != nil {
		o = v.cluster.Status.LastLSN
	}
	return max(o, v.st.LatestEndLSN)
}

func tagTrue(tags map[string]any, k string) bool {
	switch x := tags[k].(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1":
			return true
		}
	case int:
		return x != 0
	}
	return false
}

// healthCode evaluates a health-check path (spec/rest-api.md §4).
func (v *view) healthCode(path string, q url.Values) int {
	st := v.st
	maxLag := int64(-1)
	if l := q.Get("lag"); l != "" {
		if n, ok := config.ParseBytes(l); ok {
			maxLag = n
		}
	}
	lagging := maxLag >= 0 && int64(v.leaderOptime()) > int64(st.ReplayedLocation)+maxLag
	replica := 503
	if !tagTrue(st.Tags, "noloadbalance") && !lagging && st.Role == "replica" && st.State == "running" {
		if rs, ok := q["replication_state"]; !ok || (len(rs) > 0 && rs[0] == st.ReplicationState) {
			replica = 200
		}
	}
	leader, primary, standbyLeader := 503, 503, 503
	switch {
	case v.cluster == nil && v.paused:
		if st.Role == "primary" || st.Role == "standby_leader" {
			leader = 200
		}
		if st.Role == "primary" {
			primary = 200
		}
		if st.Role == "standby_leader" {
			standbyLeader = 200
		}
	case v.isLeader:
		leader = 200
		if v.standby {
			replica = 503
			if st.Role == "replica" || st.Role == "standby_leader" {
				standbyLeader = 200
			}
		} else if st.Role == "primary" && st.State == "running" {
			// Stricter than Patroni, which answers 200 to the lock
			// holder whatever its Postgres is doing: a load balancer
			// must not send writes to a leader whose Postgres is down
			// or still in recovery during a promotion.
			primary = 200
		}
	}

	if path == "/" {
		path = "/primary"
	}
	code, ignoreTags := 503, false
	switch {
	case strings.Contains(path, "standby_leader") || strings.Contains(path, "standby-leader"):
		code, ignoreTags = standbyLeader, true
	case strings.Contains(path, "leader"):
		code, ignoreTags = leader, true
	case strings.Contains(path, "master") || strings.Contains(path, "primary") || strings.Contains(path, "read-write"):
		code, ignoreTags = primary, true
	case strings.Contains(path, "replica"):
		code = replica
	case strings.Contains(path, "read-only") && !strings.Contains(path, "sync") && !strings.Contains(path, "quorum"):
		code = replica
		if primary == 200 || standbyLeader == 200 {
			code = 200
		}
	case strings.Contains(path, "health"):
		if st.State == "running" {
			code = 200
		}
	case v.cluster != nil:
		lead := primary == 200 || standbyLeader == 200
		switch {
		case (path == "/sync" || path == "/synchronous") && v.sync:
			code = replica
		case path == "/quorum" && v.quorum:
			code = replica
		case (path == "/async" || path == "/asynchronous") && !v.sync && !v.quorum:
			code = replica
		case path == "/read-only-quorum":
			if lead {
				code = 200
			} else if v.quorum {
				code = replica
			}
		case path == "/read-only-sync" || path == "/read-only-synchronous":
			if lead {
				code = 200
			} else if v.sync {
				code = replica
			}
		}
	}
	if code == 200 && !ignoreTags {
		for k, vals := range q {
			name, ok := strings.CutPrefix(k, "tag_")
			if !ok {
				continue
			}
			tv, ok := st.Tags[name]
			if !ok || tv == nil {
				return 503
			}
			s, isStr := tv.(string)
			if !isStr {
				s = strings.ToLower(fmt.Sprint(tv))
			}
			if len(vals) == 0 || s != vals[0] {
				return 503
			}
		}
	}
	return code
}

// livenessCode is GET /liveness (spec/rest-api.md §5).
func (v *view) livenessCode() int {
	if v.paused {
		return 200
	}
	ttl := time.Duration(v.st.Global.TTL) * time.Second
	threshold := 2 * ttl
	if v.st.State == "running" && v.st.Role == "primary" {
		threshold = ttl
	}
	if v.st.NextLoop.Add(threshold).After(v.now) {
		return 200
	}
	return 503
}

// readinessCode is GET /readiness (spec/rest-api.md §5).
func (v *view) readinessCode(q url.Values) int {
	if v.isLeader {
		return 200
	}
	st := v.st
	if st.State != "running" || st.ReplicationState != "streaming" {
		return 503
	}
	if v.cluster == nil && st.LatestEndLSN == 0 {
		if st.FailsafeActive {
			return 200
		}
		return 503
	}
	maxLag := st.Global.MaximumLagOnFailover
	if l := q.Get("lag"); l != "" {
		if n, ok := config.ParseBytes(l); ok {
			maxLag = n
		}
	}
	loc := st.ReplayedLocation
	if q.Get("mode") == "write" {
		loc = st.ReceivedLocation
	}
	if int64(v.leaderOptime())-int64(loc) <= maxLag {
		return 200
	}
	return 503
}
