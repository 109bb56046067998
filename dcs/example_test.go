package dcs_test

import (
	"fmt"

	"github.com/pgwarden/pgwarden/dcs"
)

// Example encodes a member the way Patroni writes it, decodes a stored one
// (including a legacy value), and builds a cluster snapshot from the raw
// entries of a prefix read.
func Example() {
	lsn := dcs.LSN(67108960)
	timeline := 3
	primary := &dcs.Member{
		Name:           "postgresql0",
		ConnURL:        "postgres://127.0.0.1:5432/postgres",
		APIURL:         "http://127.0.0.1:8008/patroni",
		State:          "running",
		Role:           "primary",
		PatroniVersion: "4.1.4",
		XLogLocation:   &lsn,
		Timeline:       &timeline,
	}
	fmt.Printf("%s\n", dcs.EncodeMember(primary))

	legacy, err := dcs.DecodeMember("postgresql1",
		[]byte("postgres://127.0.0.1:5433/postgres?application_name=http://127.0.0.1:8009/patroni"))
	fmt.Println(legacy.ConnURL, legacy.APIURL, err)

	c := dcs.BuildCluster([]dcs.Entry{
		{Key: "leader", Value: []byte("postgresql0"), Version: "12"},
		{Key: "members/postgresql0", Value: dcs.EncodeMember(primary), Version: "11"},
		{Key: "members/postgresql1", Value: []byte(`{"role":"replica"`), Version: "10"},
		{Key: "status", Value: []byte(`{"optime":67108960}`), Version: "13"},
		{Key: "failover", Value: []byte("postgresql0:postgresql1"), Version: "14"},
	})
	fmt.Println("leader:", c.Leader.Name, c.Leader.Member.Role, c.Leader.Version)
	for _, m := range c.Members {
		fmt.Printf("member %s role=%q lsn=%s\n", m.Name, m.Role, m.LSN())
	}
	fmt.Println("optime:", c.Status.LastLSN)
	fmt.Printf("failover: %s -> %s\n", c.Failover.Leader, c.Failover.Candidate)
	for _, p := range c.Problems {
		fmt.Println("problem:", p)
	}
	// Output:
	// {"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":67108960,"timeline":3}
	// postgres://127.0.0.1:5433/postgres http://127.0.0.1:8009/patroni <nil>
	// leader: postgresql0 primary 12
	// member postgresql0 role="primary" lsn=0/4000060
	// member postgresql1 role="" lsn=0/0
	// optime: 0/4000060
	// failover: postgresql0 -> postgresql1
	// problem: dcs: decode members/postgresql1 "{\"role\":\"replica\"": unexpected end of JSON input
}
