package api

import (
	"context"
	"crypto/tls"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// PeersConfig configures the Peers returned by NewPeers.
type PeersConfig struct {
	// Prober asks one member for GET /patroni. Nil means
	// NewClientProber(nil, Username, Password): Basic auth, a 2 s timeout
	// and no certificate verification.
	Prober Prober
	// Username and Password are the Basic auth sent with failsafe
	// heartbeats (POST /failsafe), and by the default Prober; Patroni takes
	// them from ctl.authentication, else restapi.authentication. Empty
	// sends none.
	Username, Password string
}

// Peers is the ha.Peers of a node that talks to its peers over this REST
// API: Probe reads each member's GET /patroni (spec/rest-api.md §7) and
// Failsafe posts the primary's heartbeat to POST /failsafe
// (spec/ha-loop.md §11). It is safe for concurrent use; ha.Node calls it
// from its loop goroutine.
type Peers struct {
	prober     Prober
	user, pass string
}

var _ ha.Peers = (*Peers)(nil)

// NewPeers returns the ha.Peers that asks the other members' REST APIs.
func NewPeers(cfg PeersConfig) *Peers {
	p := cfg.Prober
	if p == nil {
		p = NewClientProber(nil, cfg.Username, cfg.Password)
	}
	return &Peers{prober: p, user: cfg.Username, pass: cfg.Password}
}

// Probe asks every member that publishes an api_url, in parallel, and
// returns their answers by member name. A member that did not answer with
// an xlog object is present with Reachable false; members without api_url
// are absent.
func (pp *Peers) Probe(ctx context.Context, members []*dcs.Member) map[string]ha.PeerStatus {
	out := make(map[string]ha.PeerStatus, len(members))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.APIURL == "" {
			continue
		}
		wg.Go(func() {
			doc, err := pp.prober.Probe(ctx, m)
			ps := peerStatus(doc, err)
			mu.Lock()
			out[m.Name] = ps
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// peerStatus reads one answer (spec/rest-api.md §7): reachable when it has
// an xlog object; not in recovery iff xlog.location is present or the role
// is primary; a recovering node's position is max(received, replayed).
func peerStatus(doc *StatusDocument, err error) ha.PeerStatus {
	if err != nil || doc == nil || doc.XLog == nil {
		return ha.PeerStatus{}
	}
	ps := ha.PeerStatus{Reachable: true, Timeline: doc.Timeline, WatchdogFailed: doc.WatchdogFailed}
	x := doc.XLog
	if x.Location != nil || doc.Role == "primary" || doc.Role == "master" {
		if x.Location != nil {
			ps.LSN = dcs.LSN(*x.Location)
		}
	} else {
		ps.InRecovery = true
		if x.ReceivedLocation != nil {
			ps.LSN = dcs.LSN(*x.ReceivedLocation)
		}
		if x.ReplayedLocation != nil && dcs.LSN(*x.ReplayedLocation) > ps.LSN {
			ps.LSN = dcs.LSN(*x.ReplayedLocation)
		}
	}
	m := &dcs.Member{Tags: doc.Tags}
	ps.NoFailover = m.NoFailover()
	ps.Priority = m.FailoverPriority()
	return ps
}

// Failsafe posts the primary's heartbeat to every other member of the
// failsafe key in parallel (2 s, one retry) and reports whether all
// answered 200, with the WAL position each member returned in its lsn
// header (spec/ha-loop.md §11). A list naming only this node passes; one
// without hb.Name fails without calling anybody. As for other
// member-to-member calls, the server certificate is not verified.
func (pp *Peers) Failsafe(ctx context.Context, fs dcs.Failsafe, hb ha.FailsafeHeartbeat) (map[string]dcs.LSN, bool) {
	if _, ok := fs[hb.Name]; !ok {
		return nil, false
	}
	req := FailsafeRequest{Name: hb.Name, ConnURL: hb.ConnURL, APIURL: hb.APIURL, Slots: hb.Slots}
	var ok atomic.Bool
	ok.Store(true)
	var mu sync.Mutex
	lsns := map[string]dcs.LSN{}
	var wg sync.WaitGroup
	for name, url := range fs {
		if name == hb.Name {
			continue
		}
		wg.Go(func() {
			c := &Client{BaseURL: strings.TrimSuffix(url, "/patroni"), TLS: &tls.Config{InsecureSkipVerify: true}, Username: pp.user, Password: pp.pass}
			for attempt := 0; attempt < 2; attempt++ {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				r, err := c.SendFailsafe(actx, req)
				cancel()
				if err == nil && r.Code == 200 {
					if l, perr := strconv.ParseUint(r.Header.Get("lsn"), 10, 64); perr == nil && l > 0 {
						mu.Lock()
						lsns[name] = dcs.LSN(l)
						mu.Unlock()
					}
					return
				}
			}
			ok.Store(false)
		})
	}
	wg.Wait()
	return lsns, ok.Load()
}
