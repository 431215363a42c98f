package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

const snapshotTemplate = "../../stacks/testdata/SphereJitr.template.snapshot.json"

// TestCheckReadsTheStacksCAsAsItsRoleWithIAMEnforced runs the CA check against moto with the credentials of its role
// from the synthesized template, IAM enforced as AWS does: it reads the stack's CA, and is denied any other.
func TestCheckReadsTheStacksCAsAsItsRoleWithIAMEnforced(t *testing.T) {
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, motoserver.Options{})
	if err != nil {
		t.Fatalf("start moto (run 'make setup'): %v", err)
	}
	defer moto.Stop()
	client := func(creds aws.CredentialsProvider) *iot.Client {
		return iot.New(iot.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: creds})
	}
	admin := client(credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""))
	register := func(name string) string {
		ca, err := testpki.NewCA(testpki.CAOptions{CommonName: name, NotBefore: time.Now().Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := admin.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{
			CaCertificate: aws.String(string(ca.CertPEM())), SetAsActive: true, AllowAutoRegistration: true,
		})
		if err != nil {
			t.Fatalf("register CA: %v", err)
		}
		return aws.ToString(out.CertificateId)
	}
	own, other := register("Stack Tenant CA"), register("Another Tenant CA")

	role, err := stacktemplate.SnapshotRole{Template: snapshotTemplate, Stack: contract.StackName,
		Function: func(tmpl *stacktemplate.Template) (string, error) {
			for _, id := range tmpl.OfType("AWS::Lambda::Function") {
				if strings.HasPrefix(id, "OperationsCaCheckFunction") {
					return id, nil
				}
			}
			return "", errors.New("no CA check function in the template snapshot")
		},
		// The snapshot masks the CA's logical id; its Ref is the CA id.
		Pin: func(_ *stacktemplate.Template, r *stacktemplate.Resolver) { r.Refs["TenantCA<fingerprint>"] = own },
	}.Register(ctx, moto)
	if err != nil {
		t.Fatal(err)
	}

	run := func(ids ...string) (string, error) {
		var out bytes.Buffer
		c := &check{api: client(role.Credentials()), ids: ids, stack: contract.StackName, out: &out,
			log: slog.New(slog.DiscardHandler), now: time.Now}
		err := c.run(ctx)
		return out.String(), err
	}
	out, err := run(own)
	if err != nil {
		t.Fatalf("the stack's own CA: %v", err)
	}
	if !strings.Contains(out, contract.MetricTenantCADaysLeft) || !strings.Contains(out, own) {
		t.Errorf("metric lines for the own CA:\n%s", out)
	}
	if _, err := run(other); err == nil || !strings.Contains(err.Error(), "AccessDeniedException") ||
		!strings.Contains(err.Error(), "iot:DescribeCACertificate") {
		t.Errorf("another CA: err = %v, want AccessDeniedException naming iot:DescribeCACertificate", err)
	}
}
