// Package workplan counts the AWS IoT calls a registry job makes and projects their time at the rates a client is
// paced to: fleetctl's decommission (its -dry-run and confirmation) and the registry teardown of `cdk destroy` (its
// estimate before it deletes anything, and its message naming decommission when the work does not fit). It
// imports only the standard library.
package workplan

import (
	"sort"
	"time"
)

// Calls are API calls by operation name.
type Calls map[string]int

// Add adds n calls of each of the operations.
func (c Calls) Add(n int, ops ...string) {
	for _, op := range ops {
		c[op] += n
	}
}

// Total is the number of calls.
func (c Calls) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Project is the time the calls take when each operation runs at its rate beside the others (requests per second;
// an operation without a rate is not paced and costs no time): the longest of calls ÷ rate, and the operation
// that sets it.
func (c Calls) Project(rates map[string]float64) (time.Duration, string) {
	var longest time.Duration
	var which string
	ops := make([]string, 0, len(c))
	for op := range c {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		r := rates[op]
		if r <= 0 || c[op] == 0 {
			continue
		}
		if d := time.Duration(float64(c[op]) / r * float64(time.Second)); d > longest {
			longest, which = d, op
		}
	}
	return longest, which
}

// DecommissionDataOps are the calls of a decommissioning outside the AWS IoT control plane (the deny-list entry,
// the shadow): they are not paced to an IoT quota.
var DecommissionDataOps = []string{"UpdateItem", "DeleteThingShadow"}

// Decommission counts the calls of decommissioning devices (fleetctl decommission), assuming the one certificate
// the JITR function leaves a device (it retires the older ones): the deny-list entry, one listing of the thing's
// principals, per certificate its retirement (INACTIVE, detached from policy and thing, deleted), the shadow and
// the thing.
func Decommission(devices int) Calls {
	c := Calls{}
	c.Add(devices, "UpdateItem", "ListThingPrincipals", "UpdateCertificate", "DetachPolicy", "DetachThingPrincipal",
		"DeleteCertificate", "DeleteThingShadow", "DeleteThing")
	return c
}
