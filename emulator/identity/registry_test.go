package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	smithy "github.com/aws/smithy-go"

	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// TestOneIdentityForMotoAndTheEmulatorsEndpoints registers two functions and checks that each one's single
// identity is what moto's IAM layer enforces and what the emulator's endpoints verify a signature with.
func TestOneIdentityForMotoAndTheEmulatorsEndpoints(t *testing.T) {
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, motoserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer moto.Stop()
	reg := NewRegistry(moto)
	doc := json.RawMessage(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:ListThings","Resource":"*"}]}`)
	pol, err := policy.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	register := func(id string) *Identity {
		ident, err := reg.Register(ctx, "fn-"+id, motoserver.Principal{AccessKeyID: motoserver.FunctionAccessKey(id),
			RoleArn: "arn:aws:iam::123456789012:role/" + id, SessionName: id, Policies: []json.RawMessage{doc}}, pol)
		if err != nil {
			t.Fatal(err)
		}
		return ident
	}
	a, b := register("A"), register("B")
	if a.Secret() == "" || a.Secret() == b.Secret() || a.AccessKeyID() == b.AccessKeyID() {
		t.Fatalf("identities share or lack credentials: %s/%s, %s/%s", a.AccessKeyID(), a.Secret(), b.AccessKeyID(), b.Secret())
	}

	// moto's IAM layer enforces the identity's role: allowed, then denied.
	fn := iot.New(iot.Options{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL), Credentials: a.Credentials()})
	if _, err := fn.ListThings(ctx, &iot.ListThingsInput{}); err != nil {
		t.Errorf("ListThings, allowed by the role: %v", err)
	}
	_, err = fn.ListCertificates(ctx, &iot.ListCertificatesInput{})
	var api smithy.APIError
	if !errors.As(err, &api) || !strings.Contains(api.ErrorMessage(), "is not authorized to perform: iot:ListCertificates") {
		t.Errorf("ListCertificates, not allowed by the role: err = %v, want AccessDenied from moto's IAM layer", err)
	}

	// The emulator's endpoints find the same identity by its key and verify its signature with its secret.
	req := signed(t, a)
	sig, ok, err := ParseSigV4(req)
	if !ok || err != nil {
		t.Fatalf("ParseSigV4: ok=%v err=%v", ok, err)
	}
	got, found := reg.Lookup(sig.AccessKeyID)
	if !found || got != a {
		t.Fatalf("Lookup(%s) = %v, %v; want function A's identity", sig.AccessKeyID, got, found)
	}
	sum := sha256.Sum256(nil)
	if err := sig.Verify(req, got.Secret(), hex.EncodeToString(sum[:]), true); err != nil {
		t.Errorf("signature by A verified with A's secret: %v", err)
	}
	if err := sig.Verify(req, b.Secret(), hex.EncodeToString(sum[:]), true); err == nil {
		t.Error("signature by A verified with B's secret")
	}
	if _, found := reg.Lookup(motoserver.AccessKeyID); found {
		t.Error("moto's own key resolved to a function identity")
	}
}

// signed is a SigV4-signed IoT data Publish request of the identity, as the SDK signs it.
func signed(t *testing.T, id *Identity) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://127.0.0.1:8443/topics/devices%2Fx", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.RequestURI = "/topics/devices%2Fx"
	creds, err := id.Credentials().Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iotdata", motoserver.Region, time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}
