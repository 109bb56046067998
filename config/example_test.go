package config_test

import (
	"fmt"

	"github.com/pgwarden/pgwarden/config"
)

// A dynamic configuration keeps the user's key order and is patched the way
// PATCH /config does.
func ExampleDynamic_Patch() {
	d, err := config.ParseDynamic([]byte(`{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"4MB"}}}`))
	if err != nil {
		panic(err)
	}
	next, changed, err := d.Patch([]byte(`{"loop_wait":5,"postgresql":{"parameters":{"shared_buffers":"1GB"}}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(changed, string(next.JSON()))
	for _, c := range config.Diff(d, next) {
		fmt.Println(c.Path, c.Old, "->", c.New, "restart:", c.Restart)
	}
	// Output:
	// true {"ttl":30,"loop_wait":5,"postgresql":{"parameters":{"work_mem":"4MB","shared_buffers":"1GB"}}}
	// loop_wait 10 -> 5 restart: false
	// postgresql.parameters.shared_buffers  -> 1GB restart: true
}
