// Package callbacks runs the user callbacks Patroni calls around PostgreSQL
// lifecycle events (spec/postgres.md §11).
//
// Usage:
//
//  1. Build a Callback per event: a Script parsed from a command line (run
//     without a shell as "script ACTION ROLE SCOPE"), or a Func for Go code.
//  2. Create an Executor with NewExecutor, giving it the callbacks, the
//     cluster scope, a timeout and a logger.
//  3. Call Fire(event, role) from the loop: it never blocks. The executor
//     runs one callback at a time; a new callback kills the one still
//     running (on_reload has its own slot, as in Patroni).
//  4. Call Close when done: it kills a running callback and waits for it.
package callbacks
