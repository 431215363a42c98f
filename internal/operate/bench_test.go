package operate_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

// Sizes of the fleetctl benchmark (make bench-fleetctl): the fleet, and the part of it given certificates for
// timing the registry walk, whose time is then projected to the whole fleet at fleetctl's pace.
const (
	benchFleet     = 10000
	benchWalked    = 100
	benchConnected = 7000
)

// BenchmarkFleetctl prints the figures of `fleetctl status` and `fleetctl device` from the fleet index over
// benchFleet things (moto, AWS IoT's quotas on for fleetctl, off for the set-up), and beside them the registry
// walk (status -walk, today's path) measured over the same things with benchWalked of them holding a certificate,
// and projected to benchFleet certificates. It asserts nothing: it is a command that prints numbers.
func BenchmarkFleetctl(b *testing.B) {
	ctx := context.Background()
	w := newWorld(b)
	start := time.Now()
	w.things(b, stackName, "dev", benchFleet-benchWalked)
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := w.admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true}, internal)
	if err != nil {
		b.Fatal(err)
	}
	w.stack.CAIDs = []string{aws.ToString(reg.CertificateId)}
	var devices []string
	for range benchWalked {
		id := testpki.RandomDeviceID()
		thing := strings.ToLower(id)
		dev, err := ca.IssueDevice(id, time.Now().Add(-time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		cert, err := w.admin.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(dev.CertPEM())),
			CaCertificatePem: aws.String(string(ca.CertPEM())), Status: types.CertificateStatusActive}, internal)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.admin.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing), AttributePayload: &types.AttributePayload{
			Attributes: map[string]string{contract.AttrProvisionedBy: stackName, contract.AttrProvisionedAt: w.provisioned.Format(time.RFC3339)}}}, internal); err != nil {
			b.Fatal(err)
		}
		if _, err := w.admin.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thing), Principal: cert.CertificateArn}, internal); err != nil {
			b.Fatal(err)
		}
		devices = append(devices, id)
	}
	var states []motoserver.Connectivity
	for i := range benchConnected {
		states = append(states, motoserver.Connectivity{ClientID: fmt.Sprintf("dev-%05d", i), Connected: true})
	}
	if err := moto.SetConnectivity(ctx, states...); err != nil {
		b.Fatal(err)
	}
	// Refill moto's token buckets after the set-up, so fleetctl starts as against a quiet account.
	if err := moto.ResetQuotas(ctx); err != nil {
		b.Fatal(err)
	}
	setup := time.Since(start)
	b.ResetTimer()

	for range b.N {
		calls := &counter{calls: map[string]int{}}
		t0 := time.Now()
		st, err := w.fleet(calls).Status(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		statusTime, statusCalls := time.Since(t0), calls.String()
		statusTotal := calls.total()

		calls = &counter{calls: map[string]int{}}
		t0 = time.Now()
		d, err := w.fleet(calls).Device(ctx, devices[0])
		if err != nil {
			b.Fatal(err)
		}
		deviceTime, deviceTotal := time.Since(t0), calls.total()

		calls = &counter{calls: map[string]int{}}
		t0 = time.Now()
		walk, err := w.fleet(calls).WalkStatus(ctx)
		if err != nil {
			b.Fatal(err)
		}
		walkTime, walkTotal := time.Since(t0), calls.total()
		// The walk is paced: its extra calls for benchFleet certificates are DescribeCertificate (one per ACTIVE
		// certificate) and ListCertificatesByCA (one per 250), each at fleetctl's share of AWS's default quota.
		extraDescribe := benchFleet - benchWalked
		extraPages := benchFleet/250 - (benchWalked+249)/250
		describeRate, _ := iotquota.Rate("DescribeCertificate")
		listRate, _ := iotquota.Rate("ListCertificatesByCA")
		projected := walkTime + time.Duration((float64(extraDescribe)/(describeRate*0.5)+float64(extraPages)/(listRate*0.5))*float64(time.Second))

		fmt.Fprintf(os.Stdout, "bench-fleetctl: %d things of the stack in moto (set-up %.0f s, exempt from the quotas); fleetctl paced to half of AWS IoT's default quotas, which moto enforces\n",
			benchFleet, setup.Seconds())
		fmt.Fprintf(os.Stdout, "  status (fleet index)    %7.2f s  %4d calls %s  devices %d, connected %d   [target ≤ 5 s, ≤ 20 calls]\n",
			statusTime.Seconds(), statusTotal, statusCalls, st.Devices, st.Connected)
		fmt.Fprintf(os.Stdout, "  device (fleet index)    %7.2f s  %4d calls  connected %v   [target ≤ 1 s]\n",
			deviceTime.Seconds(), deviceTotal, d.Connectivity != nil && d.Connectivity.Connected)
		fmt.Fprintf(os.Stdout, "  status -walk (today)    %7.2f s  %4d calls  measured: %d things, %d of them with an ACTIVE certificate (%d listed)\n",
			walkTime.Seconds(), walkTotal, walk.Totals.Devices, benchWalked, walk.Totals.WithActive)
		fmt.Fprintf(os.Stdout, "  status -walk (today)    %7.0f s  %4d calls  projected for %d devices with certificates: + %d DescribeCertificate at %.0f/s, + %d ListCertificatesByCA pages at %.0f/s\n",
			projected.Seconds(), walkTotal+extraDescribe+extraPages, benchFleet, extraDescribe, describeRate*0.5, extraPages, listRate*0.5)
		b.ReportMetric(statusTime.Seconds(), "status-s")
		b.ReportMetric(float64(statusTotal), "status-calls")
		b.ReportMetric(deviceTime.Seconds(), "device-s")
		b.ReportMetric(projected.Seconds(), "walk-projected-s")
	}
}
