package motoserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func iotClient(s *Server, creds aws.CredentialsProvider) *iot.Client {
	return iot.New(iot.Options{Region: Region, BaseEndpoint: aws.String(s.URL), Credentials: creds})
}

// TestIAMEvaluation drives the launcher's IAM check through the real SDK: each case is one call of a registered
// principal whose policies exercise one rule of IAM's evaluation.
func TestIAMEvaluation(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	admin := iotClient(s, credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""))
	cert, err := admin.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:iot:us-east-1:123456789012:"
	p := Principal{
		AccessKeyID: FunctionAccessKey("TestFunction"),
		RoleArn:     "arn:aws:iam::123456789012:role/TestRole",
		SessionName: "test-function",
		Policies: []json.RawMessage{json.RawMessage(`{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":["iot:Describe*","iot:ListThingPrincipal?"],"Resource":["` + arn + `cert/*","` + arn + `thing/dev-?"]},
			{"Effect":"Allow","Action":"iot:AttachThingPrincipal","Resource":"` + arn + `thing/*"},
			{"Effect":"Allow","NotAction":["iot:Delete*","iot:Attach*","iot:Describe*","iot:ListThingPrincipals"],"Resource":"*"},
			{"Effect":"Deny","Action":"iot:describecertificate","Resource":"` + arn + `cert/` + aws.ToString(cert.CertificateId)[:8] + `*",
			 "Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}}]}`)},
	}
	if err := s.RegisterPrincipal(ctx, p); err != nil {
		t.Fatal(err)
	}
	fn := iotClient(s, p.Credentials())
	denied := func(err error) string {
		var ae smithy.APIError
		var re *smithyhttp.ResponseError
		if err == nil || !errors.As(err, &ae) || !errors.As(err, &re) {
			return ""
		}
		if ae.ErrorCode() != "AccessDeniedException" || re.HTTPStatusCode() != http.StatusForbidden {
			return "wrong: " + err.Error()
		}
		return ae.ErrorMessage()
	}
	user := "User: arn:aws:sts::123456789012:assumed-role/TestRole/test-function is not authorized to perform: "
	cases := []struct {
		name string
		call func() error
		want string // "" allowed, else the whole AccessDeniedException message
	}{
		{"wildcard * in the action, ? in the resource", func() error {
			_, err := fn.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String("dev-1")})
			return err
		}, ""},
		{"wildcard ? in action and resource", func() error {
			_, err := fn.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String("dev-1")})
			return err
		}, ""},
		{"? matches exactly one character", func() error {
			_, err := fn.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String("dev-10")})
			return err
		}, user + "iot:ListThingPrincipals on resource: " + arn + "thing/dev-10 because no identity-based policy allows the iot:ListThingPrincipals action"},
		{"explicit deny wins over allow, with its condition", func() error {
			_, err := fn.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: cert.CertificateId})
			return err
		}, user + "iot:DescribeCertificate on resource: " + aws.ToString(cert.CertificateArn) + " with an explicit deny in an identity-based policy"},
		{"the attachment is authorized on the certificate, not the thing", func() error {
			_, err := fn.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String("dev-1"), Principal: cert.CertificateArn})
			return err
		}, user + "iot:AttachThingPrincipal on resource: " + aws.ToString(cert.CertificateArn) + " because no identity-based policy allows the iot:AttachThingPrincipal action"},
		{"NotAction allows what it does not name, on *", func() error {
			_, err := fn.ListThings(ctx, &iot.ListThingsInput{})
			return err
		}, ""},
		{"NotAction does not allow what it names", func() error {
			_, err := fn.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String("dev-1")})
			return err
		}, user + "iot:DeleteThing on resource: " + arn + "thing/dev-1 because no identity-based policy allows the iot:DeleteThing action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("denied: %v", err)
				}
				return
			}
			if got := denied(err); got != tc.want {
				t.Errorf("got %v\n message %q\nwant %q", err, got, tc.want)
			}
		})
	}
	st, err := s.IAMStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Authorized != 3 || st.Denied != 4 || st.ByRole["TestRole"].Denied != 4 {
		t.Errorf("stats %+v, want 3 authorized and 4 denied", st)
	}
	// The admin's calls are not checked.
	if _, err := admin.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Errorf("admin call checked: %v", err)
	}
}

// TestIAMRefusesWhatItCannotEvaluate: a policy with a condition operator the check does not implement is refused
// at registration, never evaluated half-way.
func TestIAMRefusesWhatItCannotEvaluate(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	err = s.RegisterPrincipal(ctx, Principal{AccessKeyID: "ASIAX", RoleArn: "arn:aws:iam::123456789012:role/R", Policies: []json.RawMessage{
		json.RawMessage(`{"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}]}`)}})
	if err == nil || !strings.Contains(err.Error(), "DateGreaterThan") {
		t.Errorf("register with DateGreaterThan: %v, want refused", err)
	}
}
