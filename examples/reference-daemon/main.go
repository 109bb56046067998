// Command reference-daemon is pgwarden's drop-in for a Patroni node and for
// patronictl, assembled from the library's packages:
//
//	reference-daemon CONFIG.yml            run a node (SIGTERM: clean stop, SIGHUP: reload)
//	reference-daemon validate-config FILE  check a configuration file
//	reference-daemon generate-config       print a sample configuration
//	reference-daemon version               print the version
//	reference-daemon demo                  a local three-node cluster with a failover
//	reference-daemon ctl [flags] COMMAND   patronictl (spec/patronictl.md)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pgwarden/pgwarden/config"
)

// version is the daemon version; the REST API reports it as the Patroni
// version.
const version = "4.1.4"

func main() { os.Exit(run(os.Args[1:])) }

const usage = `usage:
  reference-daemon CONFIG.yml
  reference-daemon validate-config [-i] FILE
  reference-daemon generate-config [--name NAME] [--ip IP]
  reference-daemon version
  reference-daemon demo [SAMPLE_DIR]     three local nodes, a failover, a rejoin (DEMO_EXIT=1 exits)
  reference-daemon ctl [-c FILE] [-d DCS_URL] [-k] COMMAND ...`

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Println(usage)
		return 0
	case "version", "--version":
		fmt.Printf("reference-daemon (pgwarden) %s\n", version)
		return 0
	case "validate-config", "--validate-config":
		return validateConfig(args[1:])
	case "generate-config", "--generate-sample-config":
		return generateConfig(args[1:])
	case "ctl":
		return runCtl(args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "demo":
		return runDemo(args[1:])
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	return runDaemon(args[0])
}

func validateConfig(args []string) int {
	var opts config.ValidateOptions
	var path string
	for _, a := range args {
		switch a {
		case "-i", "--ignore-listen-port":
			opts.IgnoreListenPort = true
		default:
			path = a
		}
	}
	if path == "" {
		fmt.Fprintln(os.Stderr, "Error: validate-config needs a configuration file")
		return 2
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(os.Stderr, "Error: config file %s: %v\n", path, err)
		return 1
	}
	c, warns, err := config.Load(path, os.Environ())
	for _, w := range warns {
		fmt.Fprintln(os.Stderr, "Warning:", w)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	if err := c.ValidateFull(context.Background(), opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func generateConfig(args []string) int {
	host, _ := os.Hostname()
	o := config.SampleOptions{Hostname: host, IP: "127.0.0.1", Environ: os.Environ()}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--name":
			if i+1 < len(args) {
				o.Name = args[i+1]
				i++
			}
		case "--ip":
			if i+1 < len(args) {
				o.IP = args[i+1]
				i++
			}
		}
	}
	out, err := config.Sample(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	_, _ = os.Stdout.Write(out)
	return 0
}
