package main

import (
	"context"
	"errors"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
)

// fixedStore is a read-only dcs.Store serving one snapshot; every write
// fails, so a test using it proves nothing was written.
type fixedStore struct{ cl *dcs.Cluster }

var errReadOnly = errors.New("fixedStore: read only")

func (s fixedStore) Cluster(context.Context) (*dcs.Cluster, error)        { return s.cl, nil }
func (s fixedStore) Changes() <-chan struct{}                             { return nil }
func (s fixedStore) Initialize(context.Context, string, bool) error       { return errReadOnly }
func (s fixedStore) CancelInitialize(context.Context) error               { return errReadOnly }
func (s fixedStore) TouchMember(context.Context, *dcs.Member) error       { return errReadOnly }
func (s fixedStore) AcquireLeader(context.Context) error                  { return errReadOnly }
func (s fixedStore) TakeLeader(context.Context) error                     { return errReadOnly }
func (s fixedStore) UpdateLeader(context.Context, dcs.LeaderUpdate) error { return errReadOnly }
func (s fixedStore) ReleaseLeader(context.Context, *dcs.Status) error     { return errReadOnly }
func (s fixedStore) SetConfig(context.Context, []byte, dcs.Version) (dcs.Version, error) {
	return "", errReadOnly
}
func (s fixedStore) SetFailover(context.Context, *dcs.Failover, dcs.Version) (dcs.Version, error) {
	return "", errReadOnly
}
func (s fixedStore) SetSync(context.Context, *dcs.SyncState, dcs.Version) (dcs.Version, error) {
	return "", errReadOnly
}
func (s fixedStore) DeleteSync(context.Context, dcs.Version) error          { return errReadOnly }
func (s fixedStore) SetHistory(context.Context, *dcs.TimelineHistory) error { return errReadOnly }
func (s fixedStore) DeleteCluster(context.Context) error                    { return errReadOnly }
func (s fixedStore) SetTTL(time.Duration)                                   {}
func (s fixedStore) Close() error                                           { return nil }

var _ dcs.Store = fixedStore{}
