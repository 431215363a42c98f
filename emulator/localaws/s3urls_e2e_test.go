package localaws_test

// End-to-end tests of the runtime S3 URLs: the real presign function under aws-lambda-rie, invoked by the
// template's rule, answering through the emulator's IoT data endpoint; URLs checked by the emulator's S3 gate.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sphere-jitr/sphere-jitr/emulator/devicesim"
	"github.com/sphere-jitr/sphere-jitr/emulator/timeline"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

func TestS3URLsAreScopedToTheDevice(t *testing.T) {
	tw := startEmulator(t, nil)
	devs := connectFleet(t, tw, 2)
	a, b := devs[0], devs[1]
	ctx := context.Background()

	if err := a.RoundTripS3(ctx); err != nil {
		t.Fatalf("A's own upload and download: %v", err)
	}

	// A crafted name cannot leave A's prefix: the function refuses it.
	for _, name := range []string{"../" + b.Thing + "/" + devicesim.ObjectName, "x/../../" + b.Thing + "/y", "/" + b.Thing, "%2e%2e/x"} {
		_, err := a.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Name: name})
		var rej *devicesim.URLRejectedError
		if !errors.As(err, &rej) {
			t.Errorf("name %q: %v, want a rejection", name, err)
		}
	}

	// A's URL edited to point at B's key no longer matches its signature.
	get, err := a.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Name: devicesim.ObjectName})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(get.URL, "/devices/"+a.Thing+"/") {
		t.Fatalf("A's URL %s is not under devices/%s/", get.URL, a.Thing)
	}
	forged := strings.Replace(get.URL, "/devices/"+a.Thing+"/", "/devices/"+b.Thing+"/", 1)
	_, err = a.Transfer(ctx, http.MethodGet, forged, nil)
	var he *devicesim.HTTPError
	if !errors.As(err, &he) || he.Status != 403 || !strings.Contains(he.Body, "SignatureDoesNotMatch") {
		t.Errorf("A's URL edited to B's key: %v, want 403 SignatureDoesNotMatch", err)
	}

	// A publishing a request on B's request topic is refused by the device policy: A is disconnected and B, which
	// listens on its whole tree, sees neither the request nor an answer to it.
	var mu sync.Mutex
	var gotB []string
	marker := make(chan struct{})
	sub := b.Client().Subscribe("devices/"+b.Thing+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		gotB = append(gotB, m.Topic())
		mu.Unlock()
		if string(m.Payload()) == "marker" {
			close(marker)
		}
	})
	if !sub.WaitTimeout(10 * time.Second) {
		t.Fatal("B cannot subscribe")
	}
	a.Client().Publish(b.S3URLTopic(""), 1, false, `{"operation":"PUT","name":"x","contentLength":5,"clientToken":"forged"}`)
	waitLost(t, a.Client())
	b.Client().Publish(b.TelemetryTopic(), 1, false, "marker")
	select {
	case <-marker:
	case <-time.After(10 * time.Second):
		t.Fatal("B did not receive its own marker")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gotB) != 1 {
		t.Errorf("B received %v, want only its own marker", gotB)
	}
}

func TestOversizedPutIsRefusedBecauseTheLengthIsSigned(t *testing.T) {
	tw := startEmulator(t, nil)
	d := connectFleet(t, tw, 1)[0]
	ctx := context.Background()
	put, err := d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationPut, Name: "sized.bin", ContentLength: 10})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Transfer(ctx, http.MethodPut, put.URL, []byte("eleven byte"))
	var he *devicesim.HTTPError
	if !errors.As(err, &he) || he.Status != 403 || !strings.Contains(he.Body, "SignatureDoesNotMatch") {
		t.Fatalf("11 bytes on a URL signed for 10: %v, want 403 SignatureDoesNotMatch", err)
	}
	if _, err := d.Transfer(ctx, http.MethodPut, put.URL, []byte("ten bytes!")); err != nil {
		t.Fatalf("10 bytes on a URL signed for 10: %v", err)
	}
	// Over the stack's cap (1 MiB by default) there is no URL at all.
	_, err = d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationPut, Name: "big.bin", ContentLength: 1<<20 + 1})
	var rej *devicesim.URLRejectedError
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "contentLength") {
		t.Errorf("PUT of 1 MiB + 1: %v, want a rejection naming contentLength", err)
	}
}

func TestExpiredURLIsRefusedAndReplaced(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	d := connectFleet(t, tw, 1)[0]
	ctx := context.Background()

	get, err := d.RequestURL(ctx, contract.S3URLRequest{Operation: contract.S3OperationGet, Name: devicesim.ObjectName})
	if err != nil {
		t.Fatal(err)
	}
	tw.S3Gate.Advance(16 * time.Minute) // past the 15-minute expiry the template sets
	_, err = d.Transfer(ctx, http.MethodGet, get.URL, nil)
	var he *devicesim.HTTPError
	if !errors.As(err, &he) || he.Status != 403 || !strings.Contains(he.Body, "Request has expired") {
		t.Fatalf("URL used after its expiry: %v, want 403 Request has expired", err)
	}
	tw.S3Gate.Advance(-16 * time.Minute)

	// The device's URL expires before it uses it: it asks for a new one and completes.
	tw.S3Gate.ExpireNext(1)
	if err := d.RoundTripS3(ctx); err != nil {
		t.Fatalf("after an expired URL: %v", err)
	}
	// The gate refused two expired requests: the GET above and the device's first PUT, which it then replaced.
	if n := strings.Count(lw.String(), "Request has expired"); n != 2 {
		t.Errorf("%d expired requests refused, want 2", n)
	}
}

func TestPresignUnavailableDeviceRetriesAndRecovers(t *testing.T) {
	lw := &lineWriter{t: t}
	tw := startEmulator(t, timeline.New(lw))
	cfg := deviceConfig(tw, timeline.New(lw))
	cfg.URLTimeout = time.Second
	d := devicesim.NewDevice("device-1", env.tenantCA, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Disconnect()
	tw.FailPresign(2)
	if err := d.RoundTripS3(ctx); err != nil {
		t.Fatalf("after two failed invocations: %v", err)
	}
	if n := strings.Count(lw.String(), "no answer to the URL request"); n != 2 {
		t.Errorf("%d unanswered requests on the timeline, want 2", n)
	}
	if n := strings.Count(lw.String(), "invocation failed, no answer published"); n != 2 {
		t.Errorf("%d failed invocations on the timeline, want 2", n)
	}
}
