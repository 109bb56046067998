// Package memory is an in-memory dcs.Store: a fake DCS for tests and
// simulations that behaves like the real backends (same keys, same JSON
// encodings, same TTL, CAS and fencing semantics) and is driven by an
// injected clock, so tests never sleep on the wall clock.
//
// Usage:
//
//  1. Create the shared "DCS" with NewServer, passing a clock. Tests pass a
//     *testing.FakeClock from k8s.io/utils/clock/testing; nil means the
//     real clock.
//  2. Open one Store per member with Server.Client (Scope is the cluster
//     name, Name the member name, TTL the lease duration). A Store with an
//     empty Name acts like a ctl tool: it can read and write the cluster
//     but not hold a lease for itself.
//  3. Use the stores as any dcs.Store. Member and leader keys are bound to
//     the writing store's lease, which TouchMember, AcquireLeader,
//     TakeLeader and UpdateLeader refresh; when the clock passes a lease's
//     deadline (ttl after its last refresh) its keys disappear.
//  4. Step the clock to let time pass. Expiry is evaluated lazily by every
//     call, so a single-goroutine simulation stays deterministic. To have
//     Changes fire when a leader key expires while nobody calls the server,
//     run Server.Run in a goroutine (or call Server.ExpireLeases after each
//     step).
//  5. Inject faults with Server.Partition (one member cannot reach the
//     DCS), Server.SetDelay (one member's calls are slow) and
//     Server.SetAvailable (the whole DCS is down).
//
// Every Store of a Server stores values exactly as the dcs codec encodes
// them and builds snapshots with dcs.BuildCluster, so callers see what they
// would see on a real backend. Versions are revisions of a global counter,
// as etcd's mod_revision; lease ids play the role of sessions.
package memory
