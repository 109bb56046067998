package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pgwarden/pgwarden/dcs"
	"github.com/pgwarden/pgwarden/dcs/memory"
)

// A leader that stops renewing loses its key after ttl, and another member
// takes over, all on a fake clock.
func Example() {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := memory.NewServer(memory.ServerConfig{Clock: clk})

	n1 := srv.Client(memory.ClientConfig{Scope: "batman", Name: "node1", TTL: 30 * time.Second})
	n2 := srv.Client(memory.ClientConfig{Scope: "batman", Name: "node2", TTL: 30 * time.Second})
	defer n1.Close()
	defer n2.Close()

	_ = n1.TouchMember(ctx, &dcs.Member{Name: "node1", State: "running", Role: "primary"})
	_ = n1.AcquireLeader(ctx)
	err := n2.AcquireLeader(ctx)
	fmt.Println("node2 acquire:", errors.Is(err, dcs.ErrConflict))

	clk.Step(20 * time.Second)
	c, _ := n2.Cluster(ctx)
	fmt.Println("after 20s the leader is", c.Leader.Name)

	clk.Step(10 * time.Second) // node1 did not renew for ttl
	c, _ = n2.Cluster(ctx)
	fmt.Println("after 30s locked:", c.IsLocked(), "members:", len(c.Members))

	_ = n2.AcquireLeader(ctx)
	err = n1.UpdateLeader(ctx, dcs.LeaderUpdate{})
	fmt.Println("node1 renew:", errors.Is(err, dcs.ErrLeaderLost))
	c, _ = n1.Cluster(ctx)
	fmt.Println("the leader is", c.Leader.Name)
	// Output:
	// node2 acquire: true
	// after 20s the leader is node1
	// after 30s locked: false members: 0
	// node1 renew: true
	// the leader is node2
}
