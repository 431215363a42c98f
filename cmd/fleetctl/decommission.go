package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/internal/stackoutputs"
	"github.com/sphere-jitr/sphere-jitr/internal/workplan"
)

// stdin is where the confirmation is read from (tests replace it).
var stdin io.Reader = os.Stdin

// decommissionFlags are the flags of `fleetctl decommission`.
type decommissionFlags struct {
	yes, dryRun, all bool
	staleDays        int
}

func (d *decommissionFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&d.yes, "yes", false, "do not ask for confirmation")
	fs.BoolVar(&d.dryRun, "dry-run", false, "print the devices, the API calls and the projected time; change nothing")
	fs.BoolVar(&d.all, "all", false, "every device of the stack, then the certificates of its CAs no device holds (before 'cdk destroy' of a large fleet)")
	fs.IntVar(&d.staleDays, "stale-days", 0, "the devices not connected for at least this many days (the query of 'fleetctl stale')")
}

// deleters are the clients decommission deletes with: the paced IoT client, the shadows on the account's IoT data
// endpoint (moto's URL against the emulator or -endpoint-url), the deny-list table.
func deleters(awsCfg aws.Config, iotc *iot.Client, outs *stackoutputs.Outputs) operate.Deleters {
	endpoint := aws.ToString(awsCfg.BaseEndpoint)
	if endpoint == "" {
		endpoint = outs.Values[contract.OutputIotEndpoint]
	}
	return operate.Deleters{IoT: iotc, DenyList: dynamodb.NewFromConfig(awsCfg),
		Shadows: &operate.ShadowClient{Endpoint: endpoint, Region: awsCfg.Region, Credentials: awsCfg.Credentials, HTTP: awsCfg.HTTPClient}}
}

// decommissionRates are the rates fleetctl's IoT client is paced to (-rate-share of AWS's defaults, an operation
// the table does not list at the lowest), by operation of a decommissioning, for the projection of its plan.
func decommissionRates(share float64) map[string]float64 {
	rates := map[string]float64{}
	for op := range workplan.Decommission(1) {
		if slices.Contains(workplan.DecommissionDataOps, op) {
			continue
		}
		r, ok := iotquota.Rate(op)
		if !ok {
			r = iotquota.Unlisted
		}
		rates[op] = r * share
	}
	return rates
}

func runDecommission(ctx context.Context, c *cli) error {
	d := c.decommission
	if len(c.args) == 0 && !d.all && d.staleDays <= 0 {
		return errors.New("decommission needs device ids, -stale-days N or -all")
	}
	if d.all && (len(c.args) > 0 || d.staleDays > 0) {
		return errors.New("decommission -all takes every device of the stack: no device id or -stale-days with it")
	}
	things, err := c.fleet.Resolve(ctx, operate.Targets{IDs: c.args, StaleDays: d.staleDays, All: d.all})
	if err != nil {
		return err
	}
	plan := operate.PlanDecommission(things, decommissionRates(c.rateShare))
	sweep := ""
	if d.all {
		sweep = ", then the certificates of the stack's CAs no device holds (not counted)"
	}
	summary := fmt.Sprintf("decommission %d devices of %s: deny-list each, retire its certificates (INACTIVE, detached, deleted), delete its shadow and thing%s\n"+
		"  %d API calls %s, about %s at -rate-share %.2g of AWS IoT's default quotas (slowest: %s)\n",
		len(things), c.source, sweep, plan.TotalCalls, byStatus(plan.Calls), roundDuration(plan.Projected), c.rateShare, orDash(plan.Bottleneck))
	if d.dryRun {
		if c.json {
			return c.emit(plan)
		}
		fmt.Fprint(c.stdout, summary)
		for _, th := range things {
			fmt.Fprintf(c.stdout, "  %s\n", th)
		}
		fmt.Fprintln(c.stdout, "dry run: nothing changed")
		return nil
	}
	if len(things) == 0 && !d.all {
		fmt.Fprintln(c.stdout, "no device to decommission")
		return nil
	}
	if !d.yes {
		fmt.Fprint(c.stderr, summary)
		fmt.Fprint(c.stderr, "a decommissioned device cannot register again until 'fleetctl allow'. Type yes to go on: ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return errors.New("decommission not confirmed: nothing changed")
		}
	}
	start := time.Now()
	res, err := c.fleet.Decommission(ctx, things, d.all)
	if res != nil && !c.json {
		fmt.Fprintf(c.stdout, "decommissioned %d of %d devices in %s: %d certificates retired", res.Devices, len(things), roundDuration(time.Since(start)), res.Certificates)
		if d.all {
			fmt.Fprintf(c.stdout, ", %d leftover certificates of the CAs", res.LeftoverCertificates)
		}
		fmt.Fprintln(c.stdout)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(res)
	}
	fmt.Fprintln(c.stdout, "they are on the deny-list: 'fleetctl allow ID' lets a device register again at its next boot")
	return nil
}

func roundDuration(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
