package localaws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// DeleteFailedError is CloudFormation's DELETE_FAILED of a custom resource: the function answered FAILED (Reason,
// verbatim), the stack stays and nothing after it is deleted.
type DeleteFailedError struct {
	Type, LogicalID, Reason string
}

func (e *DeleteFailedError) Error() string {
	return fmt.Sprintf("%s %s DELETE_FAILED, the stack stays and nothing else was deleted: %s", e.Type, e.LogicalID, e.Reason)
}

// Leftovers is what is left of the stack in moto after Destroy: the things with the stack's provisionedBy
// attribute, the certificates of its CAs, and its resources that CloudFormation deletes, by resource type.
type Leftovers struct {
	Things       int
	Certificates int
	Resources    map[string][]string // resource type → physical names still there
}

// Empty reports whether nothing of the stack is left.
func (l Leftovers) Empty() bool {
	n := l.Things + l.Certificates
	for _, names := range l.Resources {
		n += len(names)
	}
	return n == 0
}

func (l Leftovers) String() string {
	if l.Empty() {
		return "nothing left: no thing provisioned by the stack, no certificate of its CAs, none of its resources"
	}
	parts := []string{fmt.Sprintf("%d thing(s) provisioned by the stack", l.Things), fmt.Sprintf("%d certificate(s) of its CAs", l.Certificates)}
	for _, k := range stackResourceOrder {
		if names := l.Resources[k.Type]; len(names) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", k.Type, strings.Join(names, ", ")))
		}
	}
	return "left: " + strings.Join(parts, "; ")
}

// Destroy does what CloudFormation does on `cdk destroy`, in its order: the custom resources' Delete requests to
// their functions, last created first — the registry teardown (which refuses a fleet too large for its hour: then
// Destroy stops there with a DeleteFailedError, as the stack stays in DELETE_FAILED), then the account settings
// (the function puts fleet indexing and logging back as it found them); then it ends the functions, the rules and
// the broker and deletes the stack's resources from moto, each type after the ones that use it, keeping what the
// template retains. Last it lists what is left of the stack.
func (t *Emulator) Destroy(ctx context.Context) (Leftovers, error) {
	t.tl.Event("destroy", "cdk destroy %s: the custom resources' Delete requests, then the stack's resources", t.Deployment.StackName)
	crs := slices.Clone(t.Deployment.CustomResources)
	slices.Reverse(crs)
	for _, cr := range crs {
		resp, err := t.runCustomResource(ctx, cr, cfn.RequestDelete)
		if err != nil {
			return Leftovers{}, err
		}
		if resp.Status != cfn.StatusSuccess {
			err := &DeleteFailedError{Type: cr.Type, LogicalID: cr.LogicalID, Reason: resp.Reason}
			t.tl.Event("destroy", "%v", err)
			return Leftovers{}, err
		}
		t.tl.Event("destroy", "%s %s deleted by its function %s%s", cr.Type, cr.LogicalID, cr.Function, dataNote(resp.Data))
	}
	t.stopRunning()
	t.LogShipper.Close() // what the functions wrote lands before their log groups go
	for _, k := range stackResourceOrder {
		deleted := 0
		for _, id := range t.template.OfType(k.Type) {
			name, ok := t.Deployment.Resolver.Refs[id]
			if !ok {
				continue
			}
			if retained(t.template.Resources[id]) {
				t.tl.Event("destroy", "%s %s retained (DeletionPolicy %s)", k.Type, id, t.template.Resources[id].DeletionPolicy)
				continue
			}
			if err := k.delete(ctx, t, id, name); err != nil {
				return Leftovers{}, fmt.Errorf("delete %s %s: %w", k.Type, name, err)
			}
			deleted++
		}
		if deleted > 0 {
			t.tl.Event("destroy", "%s ×%d deleted", k.Type, deleted)
		}
	}
	left, err := t.Leftovers(ctx)
	if err != nil {
		return left, err
	}
	t.tl.Event("destroy", "%s", left)
	return left, nil
}

// dataNote is a custom resource's response data as key=value pairs ("" for none).
func dataNote(data map[string]any) string {
	if len(data) == 0 {
		return ""
	}
	return ": " + pairs(data)
}

func retained(r stacktemplate.Resource) bool {
	return r.DeletionPolicy == "Retain" || r.DeletionPolicy == "RetainExceptOnCreate"
}

// Leftovers lists what is left of the stack in moto: the things it provisioned, the certificates of its CAs and
// each of its resources Destroy deletes that still exists.
func (t *Emulator) Leftovers(ctx context.Context) (Leftovers, error) {
	l := Leftovers{Resources: map[string][]string{}}
	var err error
	if l.Things, err = t.stackThings(ctx); err != nil {
		return l, err
	}
	for _, ca := range t.Deployment.CAs {
		n, err := t.certificatesOf(ctx, ca.ID)
		if err != nil {
			return l, err
		}
		l.Certificates += n
	}
	for _, k := range stackResourceOrder {
		there, err := k.list(ctx, t)
		if err != nil {
			return l, fmt.Errorf("list %s: %w", k.Type, err)
		}
		for _, id := range t.template.OfType(k.Type) {
			if name, ok := t.Deployment.Resolver.Refs[id]; ok && slices.Contains(there, name) && !retained(t.template.Resources[id]) {
				l.Resources[k.Type] = append(l.Resources[k.Type], name)
			}
		}
	}
	return l, nil
}

// stackThings counts the things with the stack's provisionedBy attribute (ListThings, 250 a page).
func (t *Emulator) stackThings(ctx context.Context) (int, error) {
	n := 0
	p := iot.NewListThingsPaginator(t.IoT, &iot.ListThingsInput{AttributeName: aws.String(contract.AttrProvisionedBy),
		AttributeValue: aws.String(t.Deployment.StackName), MaxResults: aws.Int32(250)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list the stack's things: %w", err)
		}
		n += len(out.Things)
	}
	return n, nil
}

// certificatesOf counts the certificates of a CA (none once the CA is gone).
func (t *Emulator) certificatesOf(ctx context.Context, ca string) (int, error) {
	n := 0
	p := iot.NewListCertificatesByCAPaginator(t.IoT, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca), PageSize: aws.Int32(250)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if iotapi.IsNotFound(err) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("list the certificates of CA %s: %w", ca, err)
		}
		n += len(out.Certificates)
	}
	return n, nil
}

// stackResource is a resource type Destroy deletes: how, and how to list the ones that exist.
type stackResource struct {
	Type   string
	delete func(ctx context.Context, t *Emulator, id, name string) error
	list   func(ctx context.Context, t *Emulator) ([]string, error)
}

// stackResourceOrder is the order CloudFormation deletes the stack's resources in: what uses a resource before it
// (the fleet metrics before the index's settings are gone, the rules before their queues).
var stackResourceOrder = []stackResource{
	{"AWS::IoT::FleetMetric", func(ctx context.Context, t *Emulator, _, name string) error {
		_, err := t.IoT.DeleteFleetMetric(ctx, &iot.DeleteFleetMetricInput{MetricName: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.IoT.ListFleetMetrics(ctx, &iot.ListFleetMetricsInput{})
		return names(out, err, func(o *iot.ListFleetMetricsOutput) []iottypes.FleetMetricNameAndArn { return o.FleetMetrics },
			func(m iottypes.FleetMetricNameAndArn) *string { return m.MetricName })
	}},
	{"AWS::IoT::TopicRule", func(ctx context.Context, t *Emulator, _, name string) error {
		_, err := t.IoT.DeleteTopicRule(ctx, &iot.DeleteTopicRuleInput{RuleName: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.IoT.ListTopicRules(ctx, &iot.ListTopicRulesInput{})
		return names(out, err, func(o *iot.ListTopicRulesOutput) []iottypes.TopicRuleListItem { return o.Rules },
			func(r iottypes.TopicRuleListItem) *string { return r.RuleName })
	}},
	{"AWS::IoT::Policy", func(ctx context.Context, t *Emulator, _, name string) error {
		_, err := t.IoT.DeletePolicy(ctx, &iot.DeletePolicyInput{PolicyName: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.IoT.ListPolicies(ctx, &iot.ListPoliciesInput{})
		return names(out, err, func(o *iot.ListPoliciesOutput) []iottypes.Policy { return o.Policies },
			func(p iottypes.Policy) *string { return p.PolicyName })
	}},
	// AWS::IoT::CACertificate's delete handler sets the CA INACTIVE, then deletes it; AWS IoT refuses while
	// certificates it signed are registered (the teardown removed them).
	{"AWS::IoT::CACertificate", func(ctx context.Context, t *Emulator, _, id string) error {
		if _, err := t.IoT.UpdateCACertificate(ctx, &iot.UpdateCACertificateInput{CertificateId: aws.String(id), NewStatus: iottypes.CACertificateStatusInactive}); err != nil {
			return err
		}
		_, err := t.IoT.DeleteCACertificate(ctx, &iot.DeleteCACertificateInput{CertificateId: aws.String(id)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		// Each of the stack's CAs described (moto's ListCACertificates answers 500).
		var there []string
		for _, ca := range t.Deployment.CAs {
			_, err := t.IoT.DescribeCACertificate(ctx, &iot.DescribeCACertificateInput{CertificateId: aws.String(ca.ID)})
			switch {
			case err == nil:
				there = append(there, ca.ID)
			case !iotapi.IsNotFound(err):
				return nil, err
			}
		}
		return there, nil
	}},
	{"AWS::SQS::Queue", func(ctx context.Context, t *Emulator, _, url string) error {
		_, err := t.Queues.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.Queues.ListQueues(ctx, &sqs.ListQueuesInput{})
		if err != nil {
			return nil, err
		}
		return out.QueueUrls, nil
	}},
	{"AWS::DynamoDB::Table", func(ctx context.Context, t *Emulator, _, name string) error {
		_, err := t.DynamoDB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.DynamoDB.ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			return nil, err
		}
		return out.TableNames, nil
	}},
	// A bucket goes only when empty: the stack's Custom::S3AutoDeleteObjects resource empties the bucket it names
	// first; a bucket without one fails to delete while it holds objects.
	{"AWS::S3::Bucket", func(ctx context.Context, t *Emulator, id, name string) error {
		if t.autoDeletesObjects(id) {
			if err := t.emptyBucket(ctx, name); err != nil {
				return err
			}
		}
		_, err := t.S3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		out, err := t.S3.ListBuckets(ctx, &s3.ListBucketsInput{})
		return names(out, err, func(o *s3.ListBucketsOutput) []s3types.Bucket { return o.Buckets }, func(b s3types.Bucket) *string { return b.Name })
	}},
	{"AWS::Logs::LogGroup", func(ctx context.Context, t *Emulator, _, name string) error {
		_, err := t.Logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String(name)})
		return err
	}, func(ctx context.Context, t *Emulator) ([]string, error) {
		var out []string
		p := cloudwatchlogs.NewDescribeLogGroupsPaginator(t.Logs, &cloudwatchlogs.DescribeLogGroupsInput{})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, g := range page.LogGroups {
				out = append(out, aws.ToString(g.LogGroupName))
			}
		}
		return out, nil
	}},
}

// names is the names a list call returned.
func names[O, E any](out *O, err error, items func(*O) []E, name func(E) *string) ([]string, error) {
	if err != nil {
		return nil, err
	}
	var ns []string
	for _, e := range items(out) {
		ns = append(ns, aws.ToString(name(e)))
	}
	return ns, nil
}

// autoDeletesObjects reports whether the template empties the bucket before deleting it (the CDK's
// autoDeleteObjects: a Custom::S3AutoDeleteObjects resource naming it).
func (t *Emulator) autoDeletesObjects(bucket string) bool {
	for _, id := range t.template.OfType("Custom::S3AutoDeleteObjects") {
		if stacktemplate.ReferencedResource(t.template.Prop(id, "BucketName")) == bucket {
			return true
		}
	}
	return false
}

func (t *Emulator) emptyBucket(ctx context.Context, bucket string) error {
	p := s3.NewListObjectsV2Paginator(t.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		del := &s3types.Delete{}
		for _, o := range page.Contents {
			del.Objects = append(del.Objects, s3types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := t.S3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: del}); err != nil {
			return errors.Join(fmt.Errorf("empty bucket %s", bucket), err)
		}
	}
	return nil
}
