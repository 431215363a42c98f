package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/sphere-jitr/sphere-jitr/emulator/localaws"
)

// destroy is `localaws destroy`: it asks the emulator the -info file describes to do what `cdk destroy` does and
// prints the outcome; it fails when the destroy fails or leaves anything behind.
func destroy() error {
	fs := flag.NewFlagSet("localaws destroy", flag.ExitOnError)
	infoPath := fs.String("info", "build/demo/emulator.json", "the running emulator's info file")
	_ = fs.Parse(os.Args[2:])
	data, err := os.ReadFile(*infoPath)
	if err != nil {
		return fmt.Errorf("%w: start the emulator first (localaws -info %s)", err, *infoPath)
	}
	var info localaws.Info
	if err := json.Unmarshal(data, &info); err != nil || info.Control == "" {
		return fmt.Errorf("%s names no control endpoint (%v): restart the emulator of this checkout", *infoPath, err)
	}
	res, err := localaws.RequestDestroy(context.Background(), info.Control)
	if err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New("cdk destroy: " + res.Error)
	}
	fmt.Println("cdk destroy:", res.Leftovers)
	if !res.Empty {
		return errors.New("cdk destroy left part of the stack behind")
	}
	return nil
}
