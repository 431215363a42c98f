// Command twin runs the local twin of the product's cloud side: it starts moto, deploys the template `cdk synth`
// wrote into it, runs the JITR function under aws-lambda-rie and serves MQTT over TLS on loopback like AWS IoT
// Core, until it is interrupted. It writes what devices need to reach it to the -info file.
//
//	twin -template build/demo/cdk.out/SphereJitr.template.json -bootstrap build/demo/bootstrap \
//	     -rie build/tools/bin/aws-lambda-rie -info build/demo/twin.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sphere-jitr/sphere-jitr/internal/motoserver"
	"github.com/sphere-jitr/sphere-jitr/internal/twin"
	"github.com/sphere-jitr/sphere-jitr/internal/twin/timeline"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "twin:", err)
		os.Exit(1)
	}
}

func run() error {
	template := flag.String("template", "cdk.out/SphereJitr.template.json", "template written by cdk synth")
	bootstrap := flag.String("bootstrap", "", "the JITR function built for this machine (default: build ./lambda/jitr now)")
	rie := flag.String("rie", "", "the aws-lambda-rie command (default: $TWIN_RIE, or build/tools/bin/aws-lambda-rie, installed if missing)")
	info := flag.String("info", "build/demo/twin.json", "where to write the endpoint, trust anchor and bucket for the devices")
	logPath := flag.String("log", "", "file for moto and function output (default: discarded)")
	workers := flag.Int("workers", 2, "concurrent executions of the function")
	quiet := flag.Bool("quiet", false, "no timeline (benchmarks)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmpl, err := twin.LoadTemplate(*template)
	if err != nil {
		return err
	}
	if *rie == "" || *bootstrap == "" {
		root, err := motoserver.RepoRoot()
		if err != nil {
			return err
		}
		if *rie == "" {
			if *rie, err = twin.FindRIE(ctx, root); err != nil {
				return err
			}
		}
		if *bootstrap == "" {
			dir, err := os.MkdirTemp("", "twin-bootstrap-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if *bootstrap, err = twin.BuildBootstrap(ctx, root, dir); err != nil {
				return err
			}
		}
	}
	var logw io.Writer = io.Discard
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	var tl *timeline.Timeline
	if !*quiet {
		tl = timeline.New(os.Stdout)
	}
	tw, err := twin.Start(ctx, twin.Options{Template: tmpl, Bootstrap: *bootstrap, RIE: *rie, Workers: *workers, Timeline: tl, Log: logw})
	if err != nil {
		return err
	}
	defer tw.Stop()
	if err := writeInfo(*info, tw.Info()); err != nil {
		return err
	}
	tl.Event("twin", "ready; devices find it in %s (Ctrl-C stops everything)", *info)
	<-ctx.Done()
	tl.Event("twin", "stopping: broker, function, moto")
	return nil
}

// writeInfo writes the file atomically, so a reader polling for it never sees half of it.
func writeInfo(path string, info twin.Info) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
