// Command localaws runs the local emulator of the product's cloud side: it starts moto, deploys the template
// `cdk synth` wrote into it, builds the JITR and presign functions of this checkout and runs them under aws-lambda-rie, and serves
// MQTT over TLS on loopback like AWS IoT Core, until it is interrupted. It writes what devices need to reach it to
// the -info file. `localaws destroy` asks the running emulator to do what `cdk destroy` does (Emulator.Destroy,
// through the control endpoint the -info file names) and prints what is left.
//
//	localaws -template build/demo/cdk.out/SphereJitr.template.json -info build/demo/emulator.json
//	localaws destroy -info build/demo/emulator.json
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

	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

func main() {
	run := run
	if len(os.Args) > 1 && os.Args[1] == "destroy" {
		run = destroy
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localaws:", err)
		os.Exit(1)
	}
}

func run() error {
	template := flag.String("template", "cdk.out/SphereJitr.template.json", "template written by cdk synth")
	info := flag.String("info", "build/demo/emulator.json", "where to write the endpoint, trust anchor and bucket for the devices")
	logPath := flag.String("log", "", "file for moto and function output (default: discarded)")
	workers := flag.Int("workers", 2, "concurrent executions of the function")
	quiet := flag.Bool("quiet", false, "no timeline (benchmarks)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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
	setup, err := localaws.Prepare(ctx, localaws.SetupOptions{TemplatePath: *template, Moto: motoserver.Options{Log: logw}})
	if err != nil {
		return err
	}
	defer setup.Close()
	tw, err := setup.Start(ctx, localaws.Options{Workers: *workers, Timeline: tl, Log: logw})
	if err != nil {
		return err
	}
	defer tw.Stop()
	control, err := tw.ServeControl()
	if err != nil {
		return err
	}
	defer control.Close()
	ei := tw.Info()
	ei.Control = control.URL
	if err := writeInfo(*info, ei); err != nil {
		return err
	}
	tl.Event("emulator", "ready; devices find it in %s (Ctrl-C stops everything)", *info)
	<-ctx.Done()
	tl.Event("emulator", "stopping: broker, function, moto")
	return nil
}

// writeInfo writes the file atomically, so a reader polling for it never sees half of it.
func writeInfo(path string, info localaws.Info) error {
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
