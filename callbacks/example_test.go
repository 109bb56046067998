package callbacks_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/pgwarden/pgwarden/callbacks"
)

// A Go callback and a script callback on one executor. Fire never blocks;
// Wait is only for the example's determinism.
func ExampleExecutor() {
	notify := callbacks.Func(func(ctx context.Context, ev callbacks.Event, role, scope string) error {
		fmt.Println(ev, role, scope)
		return nil
	})
	script, err := callbacks.ParseScript("/bin/echo from-script")
	if err != nil {
		panic(err)
	}
	ex := callbacks.NewExecutor(callbacks.Config{
		Scope:  "batman",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Callbacks: map[callbacks.Event]callbacks.Callback{
			callbacks.OnStart:      notify,
			callbacks.OnRoleChange: notify,
			callbacks.OnStop:       script, // runs: /bin/echo from-script on_stop replica batman
		},
	})
	defer ex.Close()
	ex.Fire(callbacks.OnStart, "replica")
	ex.Wait()
	ex.Fire(callbacks.OnRoleChange, "promoted")
	ex.Wait()
	fmt.Printf("%+v\n", ex.Stats())
	// Output:
	// on_start replica batman
	// on_role_change primary batman
	// {Fired:2 Succeeded:2 Failed:0 TimedOut:0 Killed:0}
}
