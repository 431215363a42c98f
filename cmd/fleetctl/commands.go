package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const day = 24 * time.Hour

func dateOf(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d >= 2*day:
		return fmt.Sprintf("%dd", int(d/day))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
}

// shortID keeps thing names and certificate ids readable in a table; -json has them whole.
func shortID(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func (c *cli) table() *tabwriter.Writer { return tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0) }

func runStatus(ctx context.Context, c *cli) error {
	if c.walk {
		return runWalkStatus(ctx, c)
	}
	st, err := c.fleet.Status(ctx, c.certs)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(st)
	}
	unknown := func(n int) string {
		if n < 0 {
			return "unknown (the stack has no queue outputs: redeploy it)"
		}
		return strconv.Itoa(n)
	}
	fmt.Fprintf(c.stdout, "devices                %d (fleet index, %s)\n", st.Devices, dateOf(st.At))
	fmt.Fprintf(c.stdout, "connected now          %d\n", st.Connected)
	fmt.Fprintf(c.stdout, "not connected          %d ('fleetctl stale -days N' lists those gone for N days)\n", st.Disconnected)
	fmt.Fprintf(c.stdout, "on the deny-list       %d\n", st.Denied)
	fmt.Fprintf(c.stdout, "pending registrations  %s (registered events waiting for the JITR function)\n", unknown(st.PendingRegistrations))
	fmt.Fprintf(c.stdout, "dead-lettered          %s\n", unknown(st.DeadLettered))
	if st.CertificatesByStatus != nil {
		fmt.Fprintf(c.stdout, "certificates           %s\n", byStatus(st.CertificatesByStatus))
	} else {
		fmt.Fprintln(c.stdout, "certificates           not counted: AWS IoT has no count of them ('status -certs' or 'certs' walk ListCertificatesByCA, one call per 250)")
	}
	return nil
}

// runWalkStatus is the registry walk: every device with its ACTIVE certificate (status -walk).
func runWalkStatus(ctx context.Context, c *cli) error {
	st, err := c.fleet.WalkStatus(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(st)
	}
	tw := c.table()
	fmt.Fprintln(tw, "DEVICE (thing)\tACTIVE CERTIFICATE\tNOT BEFORE\tEXPIRES\tLAST ROTATION\tDENIED\t")
	for _, d := range st.Devices {
		cert, nb, exp, rot := "none", "-", "-", "-"
		if d.Active != nil {
			cert, nb, exp, rot = shortID(d.Active.ID), dateOf(d.Active.NotBefore), dateOf(d.Active.NotAfter), age(st.At, d.Active.Registered)+" ago"
			if d.ActiveCount > 1 {
				cert += fmt.Sprintf(" (+%d)", d.ActiveCount-1)
			}
		}
		denied := ""
		if d.Denied {
			denied = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", shortID(d.Thing), cert, nb, exp, rot, denied)
	}
	tw.Flush()
	t := st.Totals
	fmt.Fprintf(c.stdout, "\n%d devices: %d with an ACTIVE certificate, %d without, %d on the deny-list; %d ACTIVE certificates name no thing of the stack\n",
		t.Devices, t.WithActive, t.WithoutActive, t.Denied, t.ActiveWithoutDevice)
	fmt.Fprintf(c.stdout, "%d certificates of the stack's CAs: %s\n", t.Certificates, byStatus(st.ByState))
	return nil
}

func byStatus(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func runDevice(ctx context.Context, c *cli) error {
	d, err := c.fleet.Device(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(d)
	}
	fmt.Fprintf(c.stdout, "thing          %s\n", d.Thing)
	if !d.Exists {
		fmt.Fprintln(c.stdout, "               (no thing: the device was never provisioned by this stack, or was deleted)")
	}
	switch cn := d.Connectivity; {
	case cn == nil && d.Exists:
		fmt.Fprintln(c.stdout, "connected      unknown (not in the fleet index yet, or fleet indexing is off in this account and Region)")
	case cn == nil:
	case cn.Connected:
		fmt.Fprintf(c.stdout, "connected      yes, since %s\n", dateOf(cn.Since))
	case cn.Since.IsZero():
		fmt.Fprintln(c.stdout, "connected      no (never connected, or disconnected so long ago that AWS IoT keeps no time)")
	default:
		fmt.Fprintf(c.stdout, "connected      no, disconnected %s (%s ago): %s\n", dateOf(cn.Since), age(time.Now(), cn.Since), orDash(cn.DisconnectReason))
	}
	keys := make([]string, 0, len(d.Attributes))
	for k := range d.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(c.stdout, "%-14s %s\n", k, d.Attributes[k])
	}
	if d.Denied != nil {
		fmt.Fprintf(c.stdout, "deny-list      revoked %s by %s: %s\n", d.Denied.RevokedAt, orDash(d.Denied.RevokedBy), orDash(d.Denied.Reason))
	} else {
		fmt.Fprintln(c.stdout, "deny-list      not on it")
	}
	fmt.Fprintf(c.stdout, "certificates   %d attached\n", len(d.Certificates))
	if len(d.Certificates) > 0 {
		tw := c.table()
		fmt.Fprintln(tw, "  CERTIFICATE\tSTATUS\tNOT BEFORE\tEXPIRES\t")
		for _, cert := range d.Certificates {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t\n", cert.ID, cert.Status, dateOf(cert.NotBefore), dateOf(cert.NotAfter))
		}
		tw.Flush()
	}
	return nil
}

func runCerts(ctx context.Context, c *cli) error {
	certs, err := c.fleet.Certificates(ctx, c.status)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(certs)
	}
	now := time.Now()
	tw := c.table()
	fmt.Fprintln(tw, "CERTIFICATE\tCA\tSTATUS\tREGISTERED\tAGE\t")
	counts := map[string]int{}
	for _, cert := range certs {
		counts[cert.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", cert.ID, shortID(cert.CAID), cert.Status, dateOf(cert.Registered), age(now, cert.Registered))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d certificates: %s\n", len(certs), byStatus(counts))
	if n := counts["PENDING_ACTIVATION"]; n > 0 {
		fmt.Fprintf(c.stdout, "%d PENDING_ACTIVATION: the JITR function has not activated them (deferred, failed, or the device has not retried); see the dashboard and the JITR log group\n", n)
	}
	return nil
}

func runRevoke(ctx context.Context, c *cli) error {
	r, err := c.fleet.Revoke(ctx, c.args[0], c.reason)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(r)
	}
	fmt.Fprintf(c.stdout, "device %s is on the deny-list (%s): the JITR function revokes every new certificate it presents\n", r.Thing, r.Entry.RevokedAt)
	fmt.Fprintf(c.stdout, "%d certificate(s) REVOKED and detached from the device policy and the thing:\n", len(r.Revoked))
	for _, id := range r.Revoked {
		fmt.Fprintf(c.stdout, "  %s\n", id)
	}
	fmt.Fprintln(c.stdout, "AWS IoT disconnects an open connection of a certificate that leaves ACTIVE within a few minutes and refuses it afterwards.")
	return nil
}

func runAllow(ctx context.Context, c *cli) error {
	thing, was, err := c.fleet.Allow(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(map[string]any{"thingName": thing, "wasDenied": was})
	}
	if !was {
		fmt.Fprintf(c.stdout, "device %s was not on the deny-list; nothing changed\n", thing)
		return nil
	}
	fmt.Fprintf(c.stdout, "device %s is off the deny-list: the certificate of its next boot is provisioned (its revoked certificates stay REVOKED)\n", thing)
	return nil
}

func runCAs(ctx context.Context, c *cli) error {
	r, err := c.fleet.CAs(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(r)
	}
	tw := c.table()
	fmt.Fprintln(tw, "CA CERTIFICATE\tSUBJECT\tSTATUS\tAUTO-REGISTRATION\tEXPIRES\tDAYS LEFT\tSUCCESSOR\t")
	for _, a := range r.CAs {
		auto := "disabled"
		if a.AutoRegistration {
			auto = "enabled"
		}
		succ := "none registered"
		if a.Successor != "" {
			succ = shortID(a.Successor)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", a.ID, orDash(a.Subject), a.Status, auto, dateOf(a.NotAfter), a.DaysLeft, succ)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\ndevices can be provisioned for %d more days with the CAs registered now", r.DaysLeftWithoutSuccessor)
	if r.DaysLeftWithoutSuccessor < 60 {
		fmt.Fprint(c.stdout, " — fewer than 60: register the next tenant CA ('make tenant-ca', then 'make deploy' with both CAs)")
	}
	fmt.Fprintln(c.stdout)
	return nil
}

func runDenyList(ctx context.Context, c *cli) error {
	entries, err := c.fleet.DenyList(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(entries)
	}
	tw := c.table()
	fmt.Fprintln(tw, "DEVICE (thing)\tREVOKED AT\tBY\tREASON\t")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", shortID(e.Thing), orDash(e.RevokedAt), orDash(e.RevokedBy), orDash(e.Reason))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d devices on the deny-list\n", len(entries))
	return nil
}

func runStale(ctx context.Context, c *cli) error {
	devices, err := c.fleet.Stale(ctx, c.days)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(devices)
	}
	now := time.Now()
	tw := c.table()
	fmt.Fprintln(tw, "DEVICE (thing)\tLAST SEEN\tAGO\tDISCONNECT REASON\tPROVISIONED AT\t")
	for _, d := range devices {
		seen, ago := "never (or no time kept)", "-"
		if !d.LastSeen.IsZero() {
			seen, ago = dateOf(d.LastSeen), age(now, d.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", shortID(d.Thing), seen, ago, orDash(d.DisconnectReason), orDash(d.ProvisionedAt))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d devices not connected for %d days or more\n", len(devices), c.days)
	return nil
}
