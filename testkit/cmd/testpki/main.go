// Command testpki writes the certificates the device tests need into a folder, generated at run time by
// testkit/testpki so no private key is ever committed: a server CA with a server certificate for
// localhost/127.0.0.1 and one for another host name, an untrusted CA, and a device CA with device
// certificates whose CN is a lower-case, upper-case or 64-character device ID, or missing.
//
// Usage: go run ./cmd/testpki -out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

func main() {
	out := flag.String("out", "", "folder to write the PEM/key/DER files into (created if missing)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: testpki -out DIR")
		os.Exit(2)
	}
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "testpki:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	serverCA, err := testpki.NewCA(testpki.CAOptions{CommonName: "sphere-jitr test server CA"})
	if err != nil {
		return err
	}
	otherCA, err := testpki.NewCA(testpki.CAOptions{CommonName: "sphere-jitr untrusted CA"})
	if err != nil {
		return err
	}
	deviceCA, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		return err
	}
	server, err := serverCA.IssueServer("localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	wrongHost, err := serverCA.IssueServer("wrong-host.test")
	if err != nil {
		return err
	}
	upperID := testpki.RandomDeviceID()
	now := time.Now().Add(-time.Minute)
	lower, err := deviceCA.IssueDevice(strings.ToLower(upperID), now)
	if err != nil {
		return err
	}
	upper, err := deviceCA.IssueDevice(upperID, now)
	if err != nil {
		return err
	}
	short, err := deviceCA.IssueDevice(strings.ToLower(upperID[:64]), now)
	if err != nil {
		return err
	}
	noCN, err := deviceCA.Issue(testpki.LeafOptions{NotBefore: now})
	if err != nil {
		return err
	}
	pairs := map[string]*testpki.Pair{
		"server-ca": serverCA, "other-ca": otherCA, "device-ca": deviceCA, "server": server,
		"wrong-host": wrongHost, "device-lower": lower, "device-upper": upper, "device-short": short,
		"device-nocn": noCN,
	}
	for base, pair := range pairs {
		if err := pair.WriteFiles(dir, base); err != nil {
			return err
		}
	}
	// The device ID the identity tests expect, lower-cased as the thing name.
	return os.WriteFile(dir+"/device-id.txt", []byte(strings.ToLower(upperID)+"\n"), 0o600)
}
