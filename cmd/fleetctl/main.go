// Command fleetctl operates the fleet the SphereJitr stack provisions: fleet status, one device, the certificates
// of the stack's CAs by status, revoke and allow a device, and the tenant CAs' expiry. It works against AWS (the
// usual credential chain, -region, -stack; the stack's outputs from CloudFormation or -outputs) and against the
// local emulator (-emulator build/demo/emulator.json, which `make demo` writes).
//
//	fleetctl status   [-json] [-certs] [-walk]     from the fleet index: devices, connected, queues (-walk: the registry walk)
//	fleetctl device   <device-id>                  one device: thing, connectivity, attached certificates, deny-list entry
//	fleetctl why      <device-id>                  why it is not connected: evidence (registry, index, logs, queues) and the fix
//	fleetctl stale    [-days N]                    devices not connected for N days (fleet index)
//	fleetctl certs    [-status PENDING_ACTIVATION] certificates of the stack's CAs (PENDING ones with their age)
//	fleetctl revoke   <device-id> [-reason text]   deny-list entry, then every certificate REVOKED and detached
//	fleetctl allow    <device-id>                  off the deny-list: its next boot is provisioned
//	fleetctl decommission [device-id…] [-stale-days N | -all] [-dry-run] [-yes]
//	                                               deny-list, certificates and thing deleted, for good (resumable)
//	fleetctl cas                                   tenant CAs: status, expiry, days left, successor
//	fleetctl denylist                              the devices on the deny-list
//
// Tables go to stdout (-json for scripts), progress of long listings to stderr (-quiet silences it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fleetctl:", err)
		os.Exit(1)
	}
}

// commands maps each subcommand to its function and one-line help.
var commands = map[string]struct {
	run  func(ctx context.Context, c *cli) error
	args string
	help string
}{
	"status":       {runStatus, "", "from the fleet index: devices, connected now, deny-list, pending registrations, dead letters (-certs, -walk)"},
	"device":       {runDevice, "<device-id>", "one device: thing, connected (since, disconnect reason), attached certificates, deny-list entry"},
	"stale":        {runStale, "", "devices not connected for -days N (default 30), from the fleet index"},
	"why":          {runWhy, "<device-id>", "why the device is not connected, in plain words with the evidence and the fix"},
	"certs":        {runCerts, "", "certificates of the stack's CAs by status; -status PENDING_ACTIVATION lists the stuck ones with their age"},
	"revoke":       {runRevoke, "<device-id>", "put the device on the deny-list, revoke and detach all its certificates"},
	"allow":        {runAllow, "<device-id>", "take the device off the deny-list: its next boot is provisioned"},
	"cas":          {runCAs, "", "the stack's tenant CAs: status, expiry, days left, whether a successor is registered"},
	"denylist":     {runDenyList, "", "the devices on the deny-list"},
	"decommission": {runDecommission, "[device-id…]", "retire devices for good: deny-list, certificates deleted, shadow and thing deleted (-stale-days N, -all; -dry-run, -yes)"},
}

var order = []string{"status", "device", "why", "stale", "certs", "revoke", "allow", "decommission", "cas", "denylist"}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fleetctl <command> [flags] [device-id]")
	for _, name := range order {
		c := commands[name]
		fmt.Fprintf(w, "  %-9s %-12s %s\n", name, c.args, c.help)
	}
	fmt.Fprintln(w, "flags of every command: -emulator FILE | [-region R] [-stack NAME] [-outputs cdk-outputs.json] [-endpoint-url URL];")
	fmt.Fprintln(w, "  -json, -quiet, -page-size N (list calls, ≤250), -rate-share F (fraction of the IoT quotas, default 0.5)")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		usage(stderr)
		return flag.ErrHelp
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	c, err := parse(args[0], args[1:], stdout, stderr)
	if err != nil {
		return err
	}
	if cmd.args != "" && !strings.HasSuffix(cmd.args, "…]") && len(c.args) != 1 {
		return fmt.Errorf("%s needs exactly one %s", args[0], cmd.args)
	}
	if cmd.args == "" && len(c.args) != 0 {
		return fmt.Errorf("%s takes no argument (got %q)", args[0], c.args)
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	return cmd.run(ctx, c)
}
