package ha_test

import (
	"fmt"
	"time"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/ha"
)

// Decide is a pure function: a replica that finds the leader key gone,
// asks its peers, learns it is the most advanced node and takes over.
func ExampleDecide() {
	lsn := dcs.LSN(0x3000000)
	cluster := &dcs.Cluster{
		Initialize: &dcs.Initialize{SystemID: "7000000000000000001"},
		Members: []*dcs.Member{
			{Name: "n2", APIURL: "http://n2:8008/patroni", State: "running", XLogLocation: &lsn},
			{Name: "n3", APIURL: "http://n3:8008/patroni", State: "running", XLogLocation: &lsn},
		},
	}
	cfg := ha.DefaultConfig()
	cfg.Name = "n2"
	o := ha.Observation{
		Now:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Config:  cfg,
		Cluster: cluster,
		PG: ha.PGState{DataDir: ha.DataPresent, SysID: "7000000000000000001", Running: true,
			Timeline: 1, LSN: lsn, Slots: []string{"n3"}},
	}
	fmt.Println(ha.Decide(o))

	// The Node probes the peers and calls Decide again.
	o.Peers = map[string]ha.PeerStatus{"n3": {Reachable: true, InRecovery: true, LSN: lsn - 0x1000, Timeline: 1}}
	fmt.Println(ha.Decide(o))
	// Output:
	// asking peers whether I am the healthiest node [probe-peers]
	// promoted self to leader by acquiring session lock [acquire-leader; promote]
}
