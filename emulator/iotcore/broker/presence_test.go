package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
