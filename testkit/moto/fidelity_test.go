// Package moto_test checks, through the real aws-sdk-go-v2 IoT client, that the moto the project starts (launcher.py
// with fidelity.py) refuses what AWS IoT refuses and moto alone accepts. Each rule cites its AWS page in fidelity.py.
package moto_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/testpki"
)

var moto *motoserver.Server

// The AWS IoT quotas stay on: these tests check the emulator as the JITR function meets it.
func TestMain(m *testing.M) { os.Exit(motoserver.RunTestsWith(motoserver.Options{}, m, &moto)) }

// client resets moto and returns an IoT client for it, with retries off so each refusal is seen once.
func client(t *testing.T) *iot.Client {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	return clientOf(moto)
}

// clientOf is an IoT client of the moto server s that retries nothing an AWS service answers: every API error,
// throttling and 5xx included, reaches the test as it was. It retries only a request whose answer the connection
// lost ("use of closed network connection" while the SDK reads the body: moto's development server now and then
// cuts an answer short), which says nothing about the rule under test.
func clientOf(s *motoserver.Server) *iot.Client {
	return iot.NewFromConfig(aws.Config{
		Region:       motoserver.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		BaseEndpoint: aws.String(s.URL),
		Retryer:      motoserver.LostAnswerRetryer,
	})
}

// devicePolicy is a device policy document for the tests that attach one.
const devicePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`

// registerDevice registers a CA and one device certificate under it with the given status, as JITR does.
func registerDevice(t *testing.T, api *iot.Client, status types.CertificateStatus) (id, arn string) {
	t.Helper()
	ctx := context.Background()
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{
		CaCertificate: aws.String(string(ca.CertPEM())), CertificateMode: types.CertificateModeSniOnly,
		SetAsActive: true, AllowAutoRegistration: true,
	}); err != nil {
		t.Fatalf("register CA: %v", err)
	}
	out, err := api.RegisterCertificate(ctx, &iot.RegisterCertificateInput{
		CertificatePem: aws.String(string(dev.CertPEM())), CaCertificatePem: aws.String(string(ca.CertPEM())), Status: status,
	})
	if err != nil {
		t.Fatalf("register certificate: %v", err)
	}
	return aws.ToString(out.CertificateId), aws.ToString(out.CertificateArn)
}

// wantAPIError checks the modeled error type and the HTTP status AWS documents for it.
func wantAPIError[E error](t *testing.T, what string, err error, status int) {
	t.Helper()
	var modeled E
	if !errors.As(err, &modeled) {
		t.Fatalf("%s: got %v, want %T", what, err, modeled)
	}
	var resp *smithyhttp.ResponseError
	if !errors.As(err, &resp) || resp.HTTPStatusCode() != status {
		t.Errorf("%s: HTTP status %v, want %d", what, resp, status)
	}
}

func status(t *testing.T, api *iot.Client, id string) types.CertificateStatus {
	t.Helper()
	out, err := api.DescribeCertificate(context.Background(), &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return out.CertificateDescription.Status
}

func TestUpdateCertificateRefusesLeavingRevoked(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	id, _ := registerDevice(t, api, types.CertificateStatusPendingActivation)
	update := func(s types.CertificateStatus) error {
		_, err := api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: s})
		return err
	}
	if err := update(types.CertificateStatusRevoked); err != nil {
		t.Fatalf("revoke a PENDING_ACTIVATION certificate: %v", err)
	}
	if err := update(types.CertificateStatusRevoked); err != nil {
		t.Errorf("revoke again (UpdateCertificate is idempotent): %v", err)
	}
	for _, s := range []types.CertificateStatus{types.CertificateStatusActive, types.CertificateStatusInactive} {
		wantAPIError[*types.CertificateStateException](t, "REVOKED → "+string(s), update(s), http.StatusNotAcceptable)
	}
	if got := status(t, api, id); got != types.CertificateStatusRevoked {
		t.Errorf("status after the refused updates = %s, want REVOKED", got)
	}
}

func TestUpdateCertificateRefusesInternalStatuses(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	id, _ := registerDevice(t, api, types.CertificateStatusActive)
	for _, s := range []types.CertificateStatus{types.CertificateStatusPendingActivation, types.CertificateStatusPendingTransfer} {
		_, err := api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: s})
		wantAPIError[*types.InvalidRequestException](t, "ACTIVE → "+string(s), err, http.StatusBadRequest)
	}
	// The transitions the JITR flow makes still work: PENDING_ACTIVATION → ACTIVE → INACTIVE → ACTIVE.
	pending, _ := registerDevice(t, api, types.CertificateStatusPendingActivation)
	for _, s := range []types.CertificateStatus{types.CertificateStatusActive, types.CertificateStatusInactive, types.CertificateStatusActive} {
		if _, err := api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(pending), NewStatus: s}); err != nil {
			t.Errorf("→ %s: %v", s, err)
		}
	}
}

func TestCreateThingConflictsOnOtherConfiguration(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	create := func(attrs map[string]string) (*iot.CreateThingOutput, error) {
		return api.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("device-1"),
			AttributePayload: &types.AttributePayload{Attributes: attrs}})
	}
	first, err := create(map[string]string{"provisionedBy": "stack-a"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := create(map[string]string{"provisionedBy": "stack-a"})
	if err != nil {
		t.Fatalf("same name and configuration must succeed: %v", err)
	}
	if aws.ToString(again.ThingId) != aws.ToString(first.ThingId) {
		t.Errorf("same configuration returned thingId %s, want the existing thing %s", aws.ToString(again.ThingId), aws.ToString(first.ThingId))
	}
	_, err = create(map[string]string{"provisionedBy": "stack-b"})
	wantAPIError[*types.ResourceAlreadyExistsException](t, "other attributes", err, http.StatusConflict)
	_, err = create(nil)
	wantAPIError[*types.ResourceAlreadyExistsException](t, "no attributes", err, http.StatusConflict)
	d, err := api.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String("device-1")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Attributes["provisionedBy"] != "stack-a" || aws.ToString(d.ThingId) != aws.ToString(first.ThingId) {
		t.Errorf("thing after the refused creates: id %s attributes %v, want the first one unchanged", aws.ToString(d.ThingId), d.Attributes)
	}
}

func TestAttachThingPrincipalEnforcesExclusiveThing(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	_, arn := registerDevice(t, api, types.CertificateStatusActive)
	_, shared := registerDevice(t, api, types.CertificateStatusActive)
	for _, name := range []string{"thing-a", "thing-b"} {
		if _, err := api.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(thing, principal string, kind types.ThingPrincipalType) error {
		_, err := api.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(thing), Principal: aws.String(principal), ThingPrincipalType: kind})
		return err
	}
	if err := attach("thing-a", arn, types.ThingPrincipalTypeExclusiveThing); err != nil {
		t.Fatalf("first exclusive attachment: %v", err)
	}
	if err := attach("thing-a", arn, types.ThingPrincipalTypeExclusiveThing); err != nil {
		t.Errorf("the same exclusive attachment again (idempotent, as the JITR retry does): %v", err)
	}
	wantAPIError[*types.InvalidRequestException](t, "exclusive principal to another thing, exclusively", attach("thing-b", arn, types.ThingPrincipalTypeExclusiveThing), http.StatusBadRequest)
	wantAPIError[*types.InvalidRequestException](t, "exclusive principal to another thing, non-exclusively", attach("thing-b", arn, ""), http.StatusBadRequest)

	if err := attach("thing-a", shared, types.ThingPrincipalTypeNonExclusiveThing); err != nil {
		t.Fatal(err)
	}
	if err := attach("thing-b", shared, ""); err != nil {
		t.Errorf("a non-exclusive principal may have several things: %v", err)
	}
	wantAPIError[*types.InvalidRequestException](t, "principal with two things, exclusively", attach("thing-a", shared, types.ThingPrincipalTypeExclusiveThing), http.StatusBadRequest)

	things, err := api.ListPrincipalThings(ctx, &iot.ListPrincipalThingsInput{Principal: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if len(things.Things) != 1 || things.Things[0] != "thing-a" {
		t.Errorf("things of the exclusive principal = %v, want [thing-a]", things.Things)
	}
	v2, err := api.ListThingPrincipalsV2(ctx, &iot.ListThingPrincipalsV2Input{ThingName: aws.String("thing-a"), ThingPrincipalType: types.ThingPrincipalTypeExclusiveThing})
	if err != nil {
		t.Fatal(err)
	}
	if len(v2.ThingPrincipalObjects) != 1 || aws.ToString(v2.ThingPrincipalObjects[0].Principal) != arn {
		t.Errorf("exclusive principals of thing-a = %+v, want only %s", v2.ThingPrincipalObjects, arn)
	}

	// Detached, the principal is free for another thing.
	if _, err := api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String("thing-a"), Principal: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if err := attach("thing-b", arn, types.ThingPrincipalTypeExclusiveThing); err != nil {
		t.Errorf("exclusive attachment after the detachment: %v", err)
	}
}

// DeleteCertificate as AWS answers it: an ACTIVE certificate is refused (CertificateStateException), an attached
// thing conflicts, an attached policy conflicts unless forceDelete, which removes the attachment with the
// certificate so later deletions are not disturbed by it.
func TestDeleteCertificateRules(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	if _, err := api.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String("device"), PolicyDocument: aws.String(devicePolicy)}); err != nil {
		t.Fatal(err)
	}
	del := func(id string, force bool) error {
		_, err := api.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id), ForceDelete: force})
		return err
	}
	id, arn := registerDevice(t, api, types.CertificateStatusActive)
	wantAPIError[*types.CertificateStateException](t, "delete an ACTIVE certificate", del(id, true), http.StatusNotAcceptable)
	if _, err := api.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusInactive}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("thing-a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String("thing-a"), Principal: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	wantAPIError[*types.DeleteConflictException](t, "delete a certificate attached to a thing", del(id, true), http.StatusConflict)
	if _, err := api.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String("thing-a"), Principal: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String("device"), Target: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	wantAPIError[*types.DeleteConflictException](t, "delete a certificate with a policy, without forceDelete", del(id, false), http.StatusConflict)
	if err := del(id, true); err != nil {
		t.Fatalf("forceDelete of an INACTIVE certificate with a policy: %v", err)
	}
	wantAPIError[*types.ResourceNotFoundException](t, "delete it again", del(id, true), http.StatusNotFound)
	other, _ := registerDevice(t, api, types.CertificateStatusInactive)
	if err := del(other, false); err != nil {
		t.Errorf("delete another certificate after a forced delete: %v", err)
	}
}

// Deletions running at once, as a fleet storm's retirements do, each answer for their own certificate: none answers
// ResourceNotFound for a certificate that exists because another one was deleted meanwhile (moto's own check looked
// up every attachment's certificate, and failed that way about once per storm). The quotas are off here: the
// point is the concurrency, not the rate.
func TestConcurrentDeletesAnswerForTheirOwnCertificate(t *testing.T) {
	ctx := context.Background()
	s, err := motoserver.Start(ctx, motoserver.Options{Env: []string{contract.EnvIoTQuotasOff + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	api := clientOf(s)
	// The set-up is not what is tested: a call that got no answer (moto's development server now and then loses a
	// connection) is tried again, and "already exists" is the answer of a call whose first answer was lost.
	setUp := func(what string, call func() error) {
		t.Helper()
		var err error
		for range 3 {
			if err = call(); err == nil || iotapi.HasErrorCode(err, "ResourceAlreadyExistsException") {
				return
			}
		}
		t.Fatalf("%s: %v", what, err)
	}
	setUp("create policy", func() error {
		_, err := api.CreatePolicy(ctx, &iot.CreatePolicyInput{PolicyName: aws.String("device"), PolicyDocument: aws.String(devicePolicy)})
		return err
	})
	ca, err := testpki.NewCA(testpki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setUp("register CA", func() error {
		_, err := api.RegisterCACertificate(ctx, &iot.RegisterCACertificateInput{CaCertificate: aws.String(string(ca.CertPEM())),
			CertificateMode: types.CertificateModeSniOnly, SetAsActive: true})
		return err
	})
	const n = 150
	ids := make([]string, n)
	for i := range ids {
		dev, err := ca.IssueDevice(testpki.RandomDeviceID(), time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(dev.Cert.Raw) // AWS IoT's certificate id
		ids[i] = hex.EncodeToString(sum[:])
		setUp("register certificate", func() error {
			_, err := api.RegisterCertificate(ctx, &iot.RegisterCertificateInput{CertificatePem: aws.String(string(dev.CertPEM())),
				CaCertificatePem: aws.String(string(ca.CertPEM())), Status: types.CertificateStatusInactive})
			return err
		})
		arn := fmt.Sprintf("arn:aws:iot:%s:%s:cert/%s", motoserver.Region, motoserver.AccountID, ids[i])
		setUp("attach policy", func() error {
			_, err := api.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String("device"), Target: aws.String(arn)})
			return err
		})
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		failed     []string
		unanswered []string
		next       = make(chan string)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				_, err := api.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id), ForceDelete: true})
				var resp *smithyhttp.ResponseError
				mu.Lock()
				switch {
				case err == nil:
				case errors.As(err, &resp) && resp.HTTPStatusCode() >= 400:
					// moto answered, and refused: the fault this test is about.
					failed = append(failed, id[:8]+": "+err.Error())
				default:
					// No answer to judge (a lost connection): checked below.
					unanswered = append(unanswered, id)
					t.Logf("deletion of %s got no answer: %v", id[:8], err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d concurrent deletions of existing certificates failed, first: %s", len(failed), n, failed[0])
	}
	for _, id := range unanswered {
		setUp("delete a certificate whose deletion got no answer", func() error {
			_, err := api.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id), ForceDelete: true})
			if iotapi.IsNotFound(err) {
				return nil
			}
			return err
		})
	}
	left, err := api.ListCertificates(ctx, &iot.ListCertificatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Certificates) != 0 {
		t.Errorf("%d certificates left after deleting all %d", len(left.Certificates), n)
	}
}
