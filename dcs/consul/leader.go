package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/pgwarden/pgwarden/dcs"
)

// TouchMember implements dcs.Store: it refreshes the session and writes the
// member key locked by it (spec/dcs-layout.md §2.4, §6). The write is
// skipped when the cache shows the same value already locked by our
// session. With service registration on, it also brings the catalog entry
// up to date; a registration failure is logged and retried on the next
// call, never returned.
func (s *Store) TouchMember(ctx context.Context, m *dcs.Member) error {
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: touch member: %w", dcs.ErrNoMember)
	}
	if m == nil || m.Name != s.cfg.Name {
		return fmt.Errorf("consul: touch member: member %q is not this store's member %q", memberName(m), s.cfg.Name)
	}
	rel := dcs.KeyMembers + m.Name
	value := dcs.EncodeMember(m)
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	err := s.call(ctx, "touch member", false, func(ctx context.Context) error {
		created, err := s.refreshSession(ctx, false)
		if err != nil {
			return err
		}
		if !created {
			if p, ok := s.cachedPair(rel); ok && p != nil && p.Session == s.session && bytes.Equal(p.Value, value) {
				return nil
			}
		}
		return s.withSession(ctx, func() error { return s.lockKey(ctx, rel, value, true) })
	})
	if err != nil {
		return err
	}
	if s.cfg.Service.Register || s.svc.registered != nil {
		if err := s.syncService(ctx, m); err != nil {
			s.log.Warn("consul service registration failed; retrying on the next touch", "err", err)
		}
	}
	return nil
}

func memberName(m *dcs.Member) string {
	if m == nil {
		return ""
	}
	return m.Name
}

// withSession runs f, and once more with a new session when Consul says
// our session is gone (it expired between the renewal and f).
func (s *Store) withSession(ctx context.Context, f func() error) error {
	err := f()
	if !errors.Is(err, errSessionGone) {
		return err
	}
	s.session = ""
	if _, err := s.refreshSession(ctx, false); err != nil {
		return err
	}
	return f()
}

// lockKey writes rel locked by our session. With steal, a key locked by
// another session (an earlier session of ours, or a previous process with
// our name) is deleted with CAS in the same transaction first; without it,
// such a key is a dcs.ErrConflict. s.sessMu is held and s.session is set.
func (s *Store) lockKey(ctx context.Context, rel string, value []byte, steal bool) error {
	key := s.key(rel)
	lock := &api.KVTxnOp{Verb: api.KVLock, Key: key, Value: value, Session: s.session}
	ops := []*api.KVTxnOp{lock}
	if p, ok := s.cachedPair(rel); steal && ok && p != nil && p.Session != "" && p.Session != s.session {
		ops = []*api.KVTxnOp{{Verb: api.KVDeleteCAS, Key: key, Index: p.ModifyIndex}, lock}
	}
	_, err := s.txn(ctx, ops...)
	rb, ok := errors.AsType[*rollbackError](err)
	if !ok {
		return err
	}
	if rb.invalidSession() {
		return fmt.Errorf("%w: %w", errSessionGone, rb)
	}
	if !steal {
		return fmt.Errorf("%w: %s is locked by another session: %w", dcs.ErrConflict, rel, rb)
	}
	// The cache was behind: look at the key itself and try once more.
	p, _, err := s.client.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return err
	}
	ops = []*api.KVTxnOp{lock}
	if p != nil && p.Session != s.session {
		ops = []*api.KVTxnOp{{Verb: api.KVDeleteCAS, Key: key, Index: p.ModifyIndex}, lock}
	}
	_, err = s.txn(ctx, ops...)
	if rb, ok := errors.AsType[*rollbackError](err); ok {
		if rb.invalidSession() {
			return fmt.Errorf("%w: %w", errSessionGone, rb)
		}
		return fmt.Errorf("%w: %s changed while taking it over: %w", dcs.ErrConflict, rel, rb)
	}
	return err
}

// AcquireLeader implements dcs.Store: a Consul lock of the leader key with
// our session, which succeeds only when no other session holds it.
func (s *Store) AcquireLeader(ctx context.Context) error {
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: acquire leader: %w", dcs.ErrNoMember)
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.call(ctx, "acquire leader", false, func(ctx context.Context) error {
		if _, err := s.refreshSession(ctx, true); err != nil {
			return err
		}
		return s.withSession(ctx, func() error {
			return s.lockKey(ctx, dcs.KeyLeader, []byte(s.cfg.Name), false)
		})
	})
}

// TakeLeader implements dcs.Store: it deletes whatever leader key there is
// and locks a new one with our session, in one transaction.
func (s *Store) TakeLeader(ctx context.Context) error {
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: take leader: %w", dcs.ErrNoMember)
	}
	key := s.key(dcs.KeyLeader)
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.call(ctx, "take leader", false, func(ctx context.Context) error {
		if _, err := s.refreshSession(ctx, true); err != nil {
			return err
		}
		return s.withSession(ctx, func() error {
			_, err := s.txn(ctx,
				&api.KVTxnOp{Verb: api.KVDelete, Key: key},
				&api.KVTxnOp{Verb: api.KVLock, Key: key, Value: []byte(s.cfg.Name), Session: s.session})
			if rb, ok := errors.AsType[*rollbackError](err); ok && rb.invalidSession() {
				return fmt.Errorf("%w: %w", errSessionGone, rb)
			}
			return err
		})
	})
}

// UpdateLeader implements dcs.Store. It renews the session, then in one
// transaction checks that the leader key is still locked by our session
// and writes the status and failsafe keys, so they are written only while
// we hold the key. When the key still names us but is locked by an older
// session of ours (after SetTTL, or a restart within ttl) it moves the key
// to the current session with CAS on its index; it never recreates a key
// that expired or that someone else took.
func (s *Store) UpdateLeader(ctx context.Context, u dcs.LeaderUpdate) error {
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: update leader: %w", dcs.ErrNoMember)
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	var status, safe []byte
	return s.call(ctx, "update leader", false, func(ctx context.Context) error {
		if _, err := s.refreshSession(ctx, true); err != nil {
			return err
		}
		writes, newStatus, newSafe := s.leaderWrites(u)
		status, safe = newStatus, newSafe
		fence := &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.key(dcs.KeyLeader), Session: s.session}
		_, err := s.txn(ctx, append([]*api.KVTxnOp{fence}, writes...)...)
		rb, ok := errors.AsType[*rollbackError](err)
		if !ok {
			if err == nil {
				s.noteLeaderWrites(status, safe)
			}
			return err
		}
		if rb.OpIndex != 0 {
			return rb
		}
		p, _, err := s.client.KV().Get(s.key(dcs.KeyLeader), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return err
		}
		if p == nil || string(p.Value) != s.cfg.Name || p.Session == s.session {
			return fmt.Errorf("%w: leader key is %s", dcs.ErrLeaderLost, describeLeader(p))
		}
		s.log.Info("moving the leader key to the current session", "old_session", p.Session, "session", s.session)
		move := []*api.KVTxnOp{
			{Verb: api.KVDeleteCAS, Key: p.Key, Index: p.ModifyIndex},
			{Verb: api.KVLock, Key: p.Key, Value: []byte(s.cfg.Name), Session: s.session},
		}
		_, err = s.txn(ctx, append(move, writes...)...)
		if rb, ok := errors.AsType[*rollbackError](err); ok {
			return fmt.Errorf("%w: leader key changed while moving it: %w", dcs.ErrLeaderLost, rb)
		}
		if err == nil {
			s.noteLeaderWrites(status, safe)
		}
		return err
	})
}

func describeLeader(p *api.KVPair) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprintf("held by %q (session %q)", p.Value, p.Session)
}

// leaderWrites returns the writes of u that change something, and the new
// status and failsafe values (nil when not written). Unchanged values are
// skipped (spec/dcs-layout.md §2.5). s.sessMu is held.
func (s *Store) leaderWrites(u dcs.LeaderUpdate) (ops []*api.KVTxnOp, status, safe []byte) {
	if u.Status != nil {
		v := dcs.EncodeStatus(u.Status)
		if !s.unchanged(dcs.KeyStatus, v, s.lastStatus) {
			ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeyStatus), Value: v})
			status = v
		}
	}
	if u.Failsafe != nil {
		if len(u.Failsafe) == 0 {
			if p, ok := s.cachedPair(dcs.KeyFailsafe); !ok || p != nil {
				ops = append(ops, &api.KVTxnOp{Verb: api.KVDelete, Key: s.key(dcs.KeyFailsafe)})
			}
		} else {
			v := dcs.EncodeFailsafe(u.Failsafe)
			if !s.unchanged(dcs.KeyFailsafe, v, s.lastSafe) {
				ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeyFailsafe), Value: v})
				safe = v
			}
		}
	}
	return ops, status, safe
}

// unchanged reports whether rel already holds v: per the cache when it is
// current, else per what we wrote last.
func (s *Store) unchanged(rel string, v, last []byte) bool {
	if p, ok := s.cachedPair(rel); ok {
		return p != nil && bytes.Equal(p.Value, v)
	}
	return last != nil && bytes.Equal(last, v)
}

func (s *Store) noteLeaderWrites(status, safe []byte) {
	if status != nil {
		s.lastStatus = status
	}
	if safe != nil {
		s.lastSafe = safe
	}
}

// ReleaseLeader implements dcs.Store: in one transaction it checks that
// the leader key is ours, writes the last status and deletes the key.
func (s *Store) ReleaseLeader(ctx context.Context, last *dcs.Status) error {
	if s.cfg.Name == "" {
		return fmt.Errorf("consul: release leader: %w", dcs.ErrNoMember)
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	key := s.key(dcs.KeyLeader)
	var writes []*api.KVTxnOp
	if last != nil {
		writes = append(writes, &api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeyStatus), Value: dcs.EncodeStatus(last)})
	}
	return s.call(ctx, "release leader", false, func(ctx context.Context) error {
		if s.session != "" {
			ops := append([]*api.KVTxnOp{{Verb: api.KVCheckSession, Key: key, Session: s.session}}, writes...)
			_, err := s.txn(ctx, append(ops, &api.KVTxnOp{Verb: api.KVDelete, Key: key})...)
			rb, ok := errors.AsType[*rollbackError](err)
			if !ok {
				return err
			}
			if rb.OpIndex != 0 {
				return rb
			}
		}
		// Not locked by our session: it may still name us under an older
		// session of ours, which we may delete with CAS.
		p, _, err := s.client.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return err
		}
		if p == nil || string(p.Value) != s.cfg.Name {
			return nil
		}
		_, err = s.txn(ctx, append(writes, &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: key, Index: p.ModifyIndex})...)
		if _, ok := errors.AsType[*rollbackError](err); ok {
			return nil // changed meanwhile: no longer ours to release
		}
		return err
	})
}

// fenced runs ops in one transaction after a check that the leader key is
// locked by our session. A failed check is dcs.ErrLeaderLost; a failure of
// ops is dcs.ErrConflict. It returns the transaction's response.
func (s *Store) fenced(ctx context.Context, opName string, ops ...*api.KVTxnOp) (*api.TxnResponse, error) {
	if s.cfg.Name == "" {
		return nil, fmt.Errorf("consul: %s: %w", opName, dcs.ErrNoMember)
	}
	s.sessMu.Lock()
	session := s.session
	s.sessMu.Unlock()
	if session == "" {
		return nil, fmt.Errorf("consul: %s: %w: no session", opName, dcs.ErrLeaderLost)
	}
	fence := &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.key(dcs.KeyLeader), Session: session}
	var resp *api.TxnResponse
	err := s.call(ctx, opName, false, func(ctx context.Context) error {
		r, err := s.txn(ctx, append([]*api.KVTxnOp{fence}, ops...)...)
		if rb, ok := errors.AsType[*rollbackError](err); ok {
			if rb.OpIndex == 0 {
				return fmt.Errorf("%w: %w", dcs.ErrLeaderLost, rb)
			}
			return fmt.Errorf("%w: %w", dcs.ErrConflict, rb)
		}
		resp = r
		return err
	})
	return resp, err
}

// SetSync implements dcs.Store, fenced on the leader key.
func (s *Store) SetSync(ctx context.Context, st *dcs.SyncState, prev dcs.Version) (dcs.Version, error) {
	op := &api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeySync), Value: dcs.EncodeSync(st)}
	if prev != "" {
		idx, err := parseVersion(prev)
		if err != nil {
			return "", fmt.Errorf("consul: set sync: %w", err)
		}
		op.Verb, op.Index = api.KVCAS, idx
	}
	resp, err := s.fenced(ctx, "set sync", op)
	if err != nil {
		return "", err
	}
	return version(resultIndex(resp, op.Key)), nil
}

// DeleteSync implements dcs.Store, fenced on the leader key.
func (s *Store) DeleteSync(ctx context.Context, prev dcs.Version) error {
	op := &api.KVTxnOp{Verb: api.KVDelete, Key: s.key(dcs.KeySync)}
	if prev != "" {
		idx, err := parseVersion(prev)
		if err != nil {
			return fmt.Errorf("consul: delete sync: %w", err)
		}
		op.Verb, op.Index = api.KVDeleteCAS, idx
	}
	_, err := s.fenced(ctx, "delete sync", op)
	return err
}

// SetHistory implements dcs.Store, fenced on the leader key.
func (s *Store) SetHistory(ctx context.Context, h *dcs.TimelineHistory) error {
	_, err := s.fenced(ctx, "set history",
		&api.KVTxnOp{Verb: api.KVSet, Key: s.key(dcs.KeyHistory), Value: dcs.EncodeHistory(h)})
	return err
}
