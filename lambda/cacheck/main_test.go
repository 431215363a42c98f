package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

type fakeCAs map[string]*types.CACertificateDescription

func (f fakeCAs) DescribeCACertificate(_ context.Context, in *iot.DescribeCACertificateInput, _ ...func(*iot.Options)) (*iot.DescribeCACertificateOutput, error) {
	return &iot.DescribeCACertificateOutput{CertificateDescription: f[aws.ToString(in.CertificateId)]}, nil
}

func TestCheckWritesDaysLeftPerCAAndWithoutSuccessor(t *testing.T) {
	now := time.Now()
	ca, err := testpki.NewCA(testpki.CAOptions{NotBefore: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("c", 64)
	var out bytes.Buffer
	c := &check{api: fakeCAs{id: {CertificatePem: aws.String(string(ca.CertPEM())), Status: types.CACertificateStatusActive,
		AutoRegistrationStatus: types.AutoRegistrationStatusEnable}}, ids: []string{id}, stack: "Stack", out: &out,
		log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	if err := c.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], contract.MetricTenantCADaysLeft) || !strings.Contains(lines[1], contract.MetricDaysLeftWithoutSuccessor) {
		t.Errorf("metric lines:\n%s", out.String())
	}
}

func TestCheckFailsFastWithoutTheStackEnvironment(t *testing.T) {
	_, err := newCheck(context.Background(), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), contract.EnvCACertificateIDs) {
		t.Fatalf("newCheck error = %v, want one naming %s", err, contract.EnvCACertificateIDs)
	}
}
