package jitr_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/smithy-go"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/jitr"
)

// fakeIoT is a func-type fake of jitr.IoTAPI, the shape of the aws-sdk-go-v2 unit-testing guide widened to an
// interface of several operations: every method hands its operation name and input to the one function.
type fakeIoT func(ctx context.Context, op string, in any) (any, error)

var _ jitr.IoTAPI = fakeIoT(nil)

func result[T any](out any, err error) (T, error) {
	v, _ := out.(T)
	return v, err
}

func (f fakeIoT) DescribeCertificate(ctx context.Context, in *iot.DescribeCertificateInput, _ ...func(*iot.Options)) (*iot.DescribeCertificateOutput, error) {
	return result[*iot.DescribeCertificateOutput](f(ctx, "DescribeCertificate", in))
}

func (f fakeIoT) UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, _ ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error) {
	return result[*iot.UpdateCertificateOutput](f(ctx, "UpdateCertificate", in))
}

func (f fakeIoT) DeleteCertificate(ctx context.Context, in *iot.DeleteCertificateInput, _ ...func(*iot.Options)) (*iot.DeleteCertificateOutput, error) {
	return result[*iot.DeleteCertificateOutput](f(ctx, "DeleteCertificate", in))
}

func (f fakeIoT) CreateThing(ctx context.Context, in *iot.CreateThingInput, _ ...func(*iot.Options)) (*iot.CreateThingOutput, error) {
	return result[*iot.CreateThingOutput](f(ctx, "CreateThing", in))
}

func (f fakeIoT) AttachPolicy(ctx context.Context, in *iot.AttachPolicyInput, _ ...func(*iot.Options)) (*iot.AttachPolicyOutput, error) {
	return result[*iot.AttachPolicyOutput](f(ctx, "AttachPolicy", in))
}

func (f fakeIoT) DetachPolicy(ctx context.Context, in *iot.DetachPolicyInput, _ ...func(*iot.Options)) (*iot.DetachPolicyOutput, error) {
	return result[*iot.DetachPolicyOutput](f(ctx, "DetachPolicy", in))
}

func (f fakeIoT) AttachThingPrincipal(ctx context.Context, in *iot.AttachThingPrincipalInput, _ ...func(*iot.Options)) (*iot.AttachThingPrincipalOutput, error) {
	return result[*iot.AttachThingPrincipalOutput](f(ctx, "AttachThingPrincipal", in))
}

func (f fakeIoT) DetachThingPrincipal(ctx context.Context, in *iot.DetachThingPrincipalInput, _ ...func(*iot.Options)) (*iot.DetachThingPrincipalOutput, error) {
	return result[*iot.DetachThingPrincipalOutput](f(ctx, "DetachThingPrincipal", in))
}

func (f fakeIoT) ListThingPrincipals(ctx context.Context, in *iot.ListThingPrincipalsInput, _ ...func(*iot.Options)) (*iot.ListThingPrincipalsOutput, error) {
	return result[*iot.ListThingPrincipalsOutput](f(ctx, "ListThingPrincipals", in))
}

// fakeRegistry models the part of the AWS IoT registry the handler touches, with AWS's rules (CreateThing on an
// existing name with other attributes fails; a certificate is deleted only when not ACTIVE and without thing),
// and lets a test fail chosen calls. Its call method is the fakeIoT function.
type fakeRegistry struct {
	certs      map[string]*fakeCert         // by id
	things     map[string]map[string]string // name → attributes
	thingCerts map[string][]string          // name → principal ARNs, in attachment order
	policies   map[string]bool              // certificate ARN → device policy attached
	// failures fails calls once: key "Op" for every call of Op until consumed, "Op#n" for the n-th call only.
	failures map[string]error
	// before runs before each call is applied, to simulate another event acting concurrently.
	before func(r *fakeRegistry, op string, n int)
	calls  []string
	inputs []any
	ctxs   []context.Context
	count  map[string]int
}

type fakeCert struct {
	pem    string
	status types.CertificateStatus
	ca     string // the CA id AWS IoT registered it under; "" = not reported
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{
		certs: map[string]*fakeCert{}, things: map[string]map[string]string{}, thingCerts: map[string][]string{},
		policies: map[string]bool{}, failures: map[string]error{}, count: map[string]int{},
	}
}

func certARN(id string) string { return "arn:aws:iot:us-east-1:123456789012:cert/" + id }

func certIDOf(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code + " (fake)"}
}

var (
	errNotFound  = &types.ResourceNotFoundException{Message: aws.String("fake: not found")}
	errThrottled = &types.ThrottlingException{Message: aws.String("fake: rate exceeded")}
	errInternal  = &types.InternalFailureException{Message: aws.String("fake: internal failure")}
)

func (r *fakeRegistry) api() fakeIoT { return r.call }

func (r *fakeRegistry) call(ctx context.Context, op string, in any) (any, error) {
	r.count[op]++
	n := r.count[op]
	r.calls = append(r.calls, op)
	r.inputs = append(r.inputs, in)
	r.ctxs = append(r.ctxs, ctx)
	if err, ok := r.failures[op+"#"+strconv.Itoa(n)]; ok {
		return nil, err
	}
	if err, ok := r.failures[op]; ok {
		return nil, err
	}
	if r.before != nil {
		r.before(r, op, n)
	}
	switch in := in.(type) {
	case *iot.DescribeCertificateInput:
		c, ok := r.certs[*in.CertificateId]
		if !ok {
			return nil, errNotFound
		}
		out := &iot.DescribeCertificateOutput{CertificateDescription: &types.CertificateDescription{
			CertificateId: in.CertificateId, CertificateArn: aws.String(certARN(*in.CertificateId)),
			CertificatePem: aws.String(c.pem), Status: c.status,
		}}
		if c.ca != "" {
			out.CertificateDescription.CaCertificateId = aws.String(c.ca)
		}
		return out, nil
	case *iot.UpdateCertificateInput:
		c, ok := r.certs[*in.CertificateId]
		if !ok {
			return nil, errNotFound
		}
		c.status = in.NewStatus
		return &iot.UpdateCertificateOutput{}, nil
	case *iot.DeleteCertificateInput:
		id := *in.CertificateId
		c, ok := r.certs[id]
		switch {
		case !ok:
			return nil, errNotFound
		case c.status == types.CertificateStatusActive:
			return nil, &types.CertificateStateException{Message: aws.String("fake: certificate is ACTIVE")}
		case r.attachedToAThing(certARN(id)):
			return nil, &types.DeleteConflictException{Message: aws.String("fake: things attached")}
		case r.policies[certARN(id)] && !in.ForceDelete:
			return nil, &types.DeleteConflictException{Message: aws.String("fake: policies attached")}
		}
		delete(r.certs, id)
		delete(r.policies, certARN(id))
		return &iot.DeleteCertificateOutput{}, nil
	case *iot.CreateThingInput:
		attrs := map[string]string{}
		if in.AttributePayload != nil {
			attrs = maps.Clone(in.AttributePayload.Attributes)
		}
		if old, ok := r.things[*in.ThingName]; ok {
			if !maps.Equal(old, attrs) {
				return nil, &types.ResourceAlreadyExistsException{Message: aws.String("fake: thing exists")}
			}
			return &iot.CreateThingOutput{ThingName: in.ThingName}, nil
		}
		r.things[*in.ThingName] = attrs
		return &iot.CreateThingOutput{ThingName: in.ThingName}, nil
	case *iot.AttachPolicyInput:
		if _, ok := r.certs[certIDOf(*in.Target)]; !ok {
			return nil, errNotFound
		}
		r.policies[*in.Target] = true
		return &iot.AttachPolicyOutput{}, nil
	case *iot.DetachPolicyInput:
		if !r.policies[*in.Target] {
			return nil, apiError("ResourceNotFoundException") // not modeled for DetachPolicy
		}
		delete(r.policies, *in.Target)
		return &iot.DetachPolicyOutput{}, nil
	case *iot.AttachThingPrincipalInput:
		if _, ok := r.things[*in.ThingName]; !ok {
			return nil, errNotFound
		}
		if _, ok := r.certs[certIDOf(*in.Principal)]; !ok {
			return nil, errNotFound
		}
		if !slices.Contains(r.thingCerts[*in.ThingName], *in.Principal) {
			r.thingCerts[*in.ThingName] = append(r.thingCerts[*in.ThingName], *in.Principal)
		}
		return &iot.AttachThingPrincipalOutput{}, nil
	case *iot.DetachThingPrincipalInput:
		list := r.thingCerts[*in.ThingName]
		i := slices.Index(list, *in.Principal)
		if i < 0 {
			return nil, errNotFound
		}
		r.thingCerts[*in.ThingName] = slices.Delete(list, i, i+1)
		return &iot.DetachThingPrincipalOutput{}, nil
	case *iot.ListThingPrincipalsInput:
		if _, ok := r.things[*in.ThingName]; !ok {
			return nil, errNotFound
		}
		// Pages of two, to exercise pagination.
		list := r.thingCerts[*in.ThingName]
		start := 0
		if in.NextToken != nil {
			start, _ = strconv.Atoi(*in.NextToken)
		}
		end := min(start+2, len(list))
		out := &iot.ListThingPrincipalsOutput{Principals: slices.Clone(list[start:end])}
		if end < len(list) {
			out.NextToken = aws.String(strconv.Itoa(end))
		}
		return out, nil
	}
	return nil, fmt.Errorf("fake: operation %s not modelled", op)
}

func (r *fakeRegistry) attachedToAThing(arn string) bool {
	for _, list := range r.thingCerts {
		if slices.Contains(list, arn) {
			return true
		}
	}
	return false
}

// provisioned puts a certificate in the state a completed provisioning leaves: ACTIVE, thing, policy.
func (r *fakeRegistry) provisioned(id, pem, thing string, status types.CertificateStatus) {
	r.certs[id] = &fakeCert{pem: pem, status: status}
	if _, ok := r.things[thing]; !ok {
		r.things[thing] = map[string]string{contract.AttrProvisionedBy: "earlier"}
	}
	r.thingCerts[thing] = append(r.thingCerts[thing], certARN(id))
	r.policies[certARN(id)] = true
}
