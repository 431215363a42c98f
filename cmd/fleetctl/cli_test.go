package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestParseTakesFlagsBeforeAndAfterTheDevice(t *testing.T) {
	c, err := parse("revoke", []string{"-json", "ABC", "-reason", "stolen", "-page-size", "25"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.json || c.reason != "stolen" || c.pageSize != 25 || len(c.args) != 1 || c.args[0] != "ABC" {
		t.Errorf("parsed %+v", c)
	}
}

func TestRunRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"revoke"}, "needs exactly one <device-id>"},
		{[]string{"status", "extra"}, "takes no argument"},
		{[]string{"status", "-page-size", "251"}, "-page-size 251"},
		{[]string{"status", "-rate-share", "2"}, "-rate-share 2"},
		{[]string{"status", "-emulator", "/nonexistent/emulator.json"}, "start the emulator"},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fleetctl %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
