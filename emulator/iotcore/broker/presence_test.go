package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// TestDisconnectReasonIsAWSIoTs maps each way mochi ends a connection to the disconnectReason AWS IoT documents
// for the situation ("Lifecycle events").
func TestDisconnectReasonIsAWSIoTs(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name  string
		cause error // what the connection was stopped with first
		err   error // what OnDisconnect got
		want  string
	}{
		{"client sent DISCONNECT", packets.CodeDisconnect, nil, ReasonClientInitiatedDisconnect},
		{"client sent DISCONNECT with will", packets.CodeDisconnectWillMessage, packets.CodeDisconnectWillMessage, ReasonClientInitiatedDisconnect},
		{"another connection took the client id", packets.ErrSessionTakenOver, nil, ReasonDuplicateClientID},
		{"read deadline: 1.5 × keep-alive", timeout, timeout, ReasonKeepAliveTimeout},
		{"certificate revoked", errRevoked, nil, ReasonAuthError},
		{"publish the policy denies", packets.ErrNotAuthorized, nil, ReasonAuthError},
		{"QoS 2", packets.ErrQosNotSupported, nil, ReasonClientError},
		{"payload over 128 KB", packets.ErrPacketTooLarge, nil, ReasonClientError},
		{"nine topic filters", packets.ErrQuotaExceeded, nil, ReasonClientError},
		{"client does not read", packets.ErrPendingClientWritesExceeded, nil, ReasonThrottled},
		{"broker closing", packets.ErrServerShuttingDown, nil, ReasonServerInitiatedDisconnect},
		{"TCP closed by the peer", io.EOF, io.EOF, ReasonConnectionLost},
		{"connection reset", fmt.Errorf("read: %w", errors.New("connection reset by peer")), nil, ReasonConnectionLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := mqtt.New(nil).NewClient(nil, "t", "client", false)
			cl.Stop(tc.cause)
			if got := disconnectReason(cl, tc.err); got != tc.want {
				t.Errorf("disconnectReason = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestConnectivityReportsAreBatchedAndNeverWaitedFor: while moto is slow to answer one report, the connects and
// disconnects that follow queue without waiting and go in a few batched calls, none lost.
func TestConnectivityReportsAreBatchedAndNeverWaitedFor(t *testing.T) {
	b := &Broker{opts: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer b.cancel()
	release := make(chan struct{})
	var mu sync.Mutex
	var calls, recorded int
	b.presence = newPresence(b, PresenceOptions{ReportConnectivity: func(_ context.Context, states ...motoserver.Connectivity) error {
		mu.Lock()
		calls++
		recorded += len(states)
		first := calls == 1
		mu.Unlock()
		if first {
			<-release // moto busy
		}
		return nil
	}})
	const n = 5000
	for i := 0; i < n; i++ {
		b.presence.report(motoserver.Connectivity{ClientID: fmt.Sprint("device-", i), Connected: i%2 == 0})
	}
	// Every report was queued while the first call was still waiting: reporting never blocked.
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.FlushConnectivity(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		mu.Lock()
		done := recorded == n
		c := calls
		mu.Unlock()
		if done {
			if c > n/100 {
				t.Errorf("%d calls for %d reports; want them batched", c, n)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d reports recorded", recorded, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := b.presence.dropped.Load(); d != 0 {
		t.Errorf("%d reports dropped", d)
	}
}
