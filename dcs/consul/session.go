package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// renewMinInterval: TouchMember skips the session renewal when the session
// was created or renewed less than this ago. A leader's cycle calls
// UpdateLeader and TouchMember back to back; renewing twice within a second
// gains nothing. Far below any session TTL Consul accepts (>= 1 s even with
// a lowered session_ttl_min), so it never risks expiry.
const renewMinInterval = time.Second

// errSessionGone reports that Consul refused an operation because our
// session no longer exists.
var errSessionGone = errors.New("session no longer exists")

// refreshSession makes sure the member has a live session: it creates one
// when there is none or the TTL changed (a session's TTL is fixed), and
// otherwise renews it when force is set or the last renewal is older than
// renewMinInterval. created reports a new session. s.sessMu is held.
//
// This is the only place the session is renewed, and it runs only inside
// TouchMember, AcquireLeader, TakeLeader and UpdateLeader (dcs.Store's
// liveness rule): a hung HA loop lets the session, and with it the member
// and leader keys, expire.
func (s *Store) refreshSession(ctx context.Context, force bool) (created bool, err error) {
	if s.session != "" && s.sessionTTL != sessionTTL(s.ttl) {
		s.log.Info("ttl changed: moving member to a new session",
			"old_session_ttl", s.sessionTTL, "new_session_ttl", sessionTTL(s.ttl))
		s.session = ""
	}
	if s.session == "" {
		return true, s.createSession(ctx)
	}
	if !force && s.cfg.Clock.Since(s.lastRenew) < renewMinInterval {
		return false, nil
	}
	entry, _, err := s.client.Session().Renew(s.session, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("renew session %s: %w", s.session, err)
	}
	if entry == nil {
		s.log.Warn("session expired; creating a new one", "session", s.session)
		s.session = ""
		return true, s.createSession(ctx)
	}
	s.lastRenew = s.cfg.Clock.Now()
	return false, nil
}

// sessionTTL is the session TTL for the cluster ttl: half of it, because
// Consul invalidates a session only after twice its TTL has passed since
// the last renewal (spec/dcs-layout.md §6).
func sessionTTL(ttl time.Duration) time.Duration {
	return (ttl / 2).Round(time.Millisecond)
}

// createSession creates the member's session: named <scope>-<name>, no
// health checks unless configured, Behavior delete (keys locked by it are
// deleted when it ends) and a 1 ms lock-delay. If the agent refuses the
// TTL as too short, it retries with the agent's minimum and warns that
// keys now outlive ttl.
func (s *Store) createSession(ctx context.Context) error {
	ttl := sessionTTL(s.ttl)
	for attempt := 0; ; attempt++ {
		id, err := s.newSession(ctx, ttl)
		if err == nil {
			s.session, s.sessionTTL, s.lastRenew = id, sessionTTL(s.ttl), s.cfg.Clock.Now()
			if ttl != s.sessionTTL {
				// Keep sessionTTL at the requested value so that the next
				// refresh does not recreate the session every time.
				s.log.Warn("agent refused the session TTL; member and leader keys outlive ttl",
					"requested_session_ttl", sessionTTL(s.ttl), "session_ttl", ttl)
			}
			s.log.Debug("session created", "session", id, "session_ttl", ttl)
			return nil
		}
		agentMin, tooShort := minTTLFromError(err)
		if !tooShort || attempt > 0 || agentMin <= ttl {
			return fmt.Errorf("create session: %w", err)
		}
		ttl = agentMin
	}
}

func (s *Store) newSession(ctx context.Context, ttl time.Duration) (string, error) {
	entry := &api.SessionEntry{
		Name:      s.cfg.Scope + "-" + s.cfg.Name,
		LockDelay: lockDelay,
		Behavior:  api.SessionBehaviorDelete,
		TTL:       ttl.String(),
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if len(s.cfg.Checks) > 0 {
		entry.Checks = s.cfg.Checks
		id, _, err := s.client.Session().Create(entry, wo)
		return id, err
	}
	// CreateNoChecks sends an explicit empty list: without it Consul binds
	// the session to the node's serfHealth check.
	id, _, err := s.client.Session().CreateNoChecks(entry, wo)
	return id, err
}

// minTTLFromError recognizes Consul's refusal of a session TTL ("Session
// TTL '5s' must be between [10s=24h0m0s]") and returns the minimum it names.
func minTTLFromError(err error) (time.Duration, bool) {
	msg := err.Error()
	if !strings.Contains(msg, "TTL") || !strings.Contains(msg, "must be between") {
		return 0, false
	}
	_, rest, ok := strings.Cut(msg, "between [")
	if !ok {
		return minSessionTTL, true
	}
	lo, _, ok := strings.Cut(rest, "=")
	if !ok {
		return minSessionTTL, true
	}
	d, perr := time.ParseDuration(strings.TrimSpace(lo))
	if perr != nil {
		return minSessionTTL, true
	}
	return d, true
}
