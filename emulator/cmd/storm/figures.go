package main

// What a storm costs and what the emulator spent on it: the per-device costs (function invocations, event source
// mapping receives, DynamoDB reads and writes), the CPU of each emulator process, and what the function's log says
// (invocations cut by their deadline, the reconciler's reads).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sphere-jitr/sphere-jitr/emulator/lambdaruntime"
)

// costs are counters that only grow; a scenario's costs are the difference over it.
type costs struct {
	invocations, receives, ddbReads, ddbWrites int64
	byQueue                                    map[string]lambdaruntime.MappingCosts
}

func (c costs) minus(o costs) costs {
	d := costs{c.invocations - o.invocations, c.receives - o.receives, c.ddbReads - o.ddbReads, c.ddbWrites - o.ddbWrites,
		map[string]lambdaruntime.MappingCosts{}}
	for q, m := range c.byQueue {
		d.byQueue[q] = lambdaruntime.MappingCosts{Invocations: m.Invocations - o.byQueue[q].Invocations, Receives: m.Receives - o.byQueue[q].Receives}
	}
	return d
}

// queues says what each event source mapping cost: its batches (invocations) and receives, for where the
// per-device invocations and receives go.
func (c costs) queues() string {
	var parts []string
	for q, m := range c.byQueue {
		parts = append(parts, fmt.Sprintf("%s invocations=%d receives=%d", q, m.Invocations, m.Receives))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// DynamoDB's read and write actions, as moto's IAM layer counts the function roles' calls.
var (
	ddbReads  = []string{"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:TransactGetItems"}
	ddbWrites = []string{"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:TransactWriteItems"}
)

// costs reads the counters: every function's invocations and mapping receives, and the DynamoDB calls moto's IAM
// layer authorized.
func (b *bench) costs(ctx context.Context) (costs, error) {
	c := costs{byQueue: map[string]lambdaruntime.MappingCosts{}}
	for _, fn := range b.emu.Functions {
		fc := fn.Costs()
		c.invocations += fc.Invocations
		c.receives += fc.Receives
		for q, m := range fc.ByQueue {
			c.byQueue[q] = m
		}
	}
	st, err := b.moto.IAMStats(ctx)
	if err != nil {
		return c, err
	}
	for _, a := range ddbReads {
		c.ddbReads += int64(st.ByAction[a])
	}
	for _, a := range ddbWrites {
		c.ddbWrites += int64(st.ByAction[a])
	}
	return c, nil
}

// processCPU is one emulator process's (or group's) share of a core over a scenario.
type processCPU struct {
	name  string
	share float64
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times (100 on Linux).
const clockTicks = 100

// cpuTimes reads the CPU seconds used so far by each emulator process: the moto processes, the function's
// execution environments (aws-lambda-rie and the function, by process group) and this process.
func (b *bench) cpuTimes() map[string]float64 {
	groups := map[int]string{}
	for _, fn := range b.emu.Functions {
		for _, pgid := range fn.Processes() {
			groups[pgid] = "lambda"
		}
	}
	out := map[string]float64{}
	for name, pid := range b.moto.Processes() {
		if t, _, _, ok := procTimes(pid); ok {
			out[name] += t
		}
	}
	if t, _, _, ok := procTimes(os.Getpid()); ok {
		out["go"] += t
	}
	if pid := b.links.pid(); pid > 0 {
		if t, _, _, ok := procTimes(pid); ok {
			out["devices"] += t
		}
	}
	if len(groups) > 0 {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			// aws-lambda-rie leads its process group; the function it runs has a group of its own, with RIE as parent.
			if t, pgrp, ppid, ok := procTimes(pid); ok {
				if name, in := groups[pgrp]; in {
					out[name] += t
				} else if name, in := groups[ppid]; in {
					out[name] += t
				}
			}
		}
	}
	return out
}

// procTimes is a process's user + system CPU seconds, its process group and its parent, from /proc/<pid>/stat.
func procTimes(pid int) (cpu float64, pgrp, ppid int, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks, pgrp, ppid, true
}

// cpuShares is each process's CPU over the scenario ÷ its length, moto's processes first.
func cpuShares(before, after map[string]float64, elapsed time.Duration) []processCPU {
	var out []processCPU
	for name, t := range after {
		out = append(out, processCPU{name: name, share: (t - before[name]) / elapsed.Seconds()})
	}
	sort.Slice(out, func(i, j int) bool {
		mi, mj := strings.HasPrefix(out[i].name, "moto"), strings.HasPrefix(out[j].name, "moto")
		if mi != mj {
			return mi
		}
		return out[i].name < out[j].name
	})
	return out
}

// logTap passes moto's and the functions' output on and reads the function's log lines as they pass: invocations
// that ran into their deadline ("deadlineCut") and the reconciler's reads ("reconcileReads").
type logTap struct {
	out     io.Writer
	mu      sync.Mutex
	partial []byte
	cuts    int
	reads   []int
}

func (t *logTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(t.partial[:i])
		t.partial = t.partial[i+1:]
	}
	t.partial = append([]byte(nil), t.partial...)
	t.mu.Unlock()
	return t.out.Write(p)
}

func (t *logTap) line(l []byte) {
	if !bytes.Contains(l, []byte(`"deadlineCut"`)) && !bytes.Contains(l, []byte(`"reconcileReads"`)) {
		return
	}
	var rec struct {
		DeadlineCut    *int `json:"deadlineCut"`
		ReconcileReads *int `json:"reconcileReads"`
	}
	if json.Unmarshal(l, &rec) != nil {
		return
	}
	if rec.DeadlineCut != nil {
		t.cuts += *rec.DeadlineCut
	}
	if rec.ReconcileReads != nil {
		t.reads = append(t.reads, *rec.ReconcileReads)
	}
}

func (t *logTap) deadlineCuts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cuts
}

func (t *logTap) reconciles() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.reads)
}

// reconcile runs one reconciler pass (the function invoked with its schedule's event) and returns what it read.
func (b *bench) reconcile(ctx context.Context) (int, error) {
	d := b.emu.Deployment.JITR()
	fn := b.emu.Functions[d.LogicalID]
	if fn == nil || len(d.Schedules) == 0 {
		return 0, fmt.Errorf("the template's JITR function has no schedule (the reconciler)")
	}
	seen := b.tap.reconciles()
	ev := lambdaruntime.ScheduledEvent(time.Now(), d.Schedules[0].ARN, b.emu.AWS.Region, b.emu.Deployment.Resolver.Pseudo["AWS::AccountId"])
	if _, err := fn.Invoke(ctx, ev); err != nil {
		return 0, fmt.Errorf("reconciler pass: %w", err)
	}
	for i := 0; i < 50 && b.tap.reconciles() == seen; i++ { // the log line may trail the invocation's answer
		time.Sleep(100 * time.Millisecond)
	}
	b.tap.mu.Lock()
	defer b.tap.mu.Unlock()
	if len(b.tap.reads) == seen {
		return 0, fmt.Errorf("reconciler pass: no reconcileReads in the function's log")
	}
	return b.tap.reads[len(b.tap.reads)-1], nil
}
