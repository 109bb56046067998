package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/pgwarden/pgwarden/api"
)

// A health check answers from the latest published status.
func ExampleNewHandler() {
	now := time.Now()
	status := api.StatusFunc(func() api.Status {
		return api.Status{Name: "node1", Scope: "demo", State: "running", Role: "primary", QueryOK: true,
			LeaderUntil: now.Add(time.Hour), DCSLastSeen: now}
	})
	h, err := api.NewHandler(api.Config{Status: status})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	c := &api.Client{BaseURL: srv.URL}
	for _, path := range []string{"/primary", "/replica"} {
		code, doc, err := c.Health(context.Background(), path, nil)
		if err != nil {
			panic(err)
		}
		fmt.Println(path, code, doc.Role)
	}
	// Output:
	// /primary 200 primary
	// /replica 503 primary
}
