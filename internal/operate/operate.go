// Package operate answers the questions of the people who run the fleet, against AWS IoT and the stack's
// deny-list: which devices the stack provisioned and with which certificate, which certificates of the stack's CAs
// are in which status, the tenant CAs' expiry, and it revokes a device (certificates REVOKED and detached, device
// on the deny-list the JITR function reads) or allows it again. Every list call is paged to the end. cmd/fleetctl
// renders it and gives it an IoT client paced to a share of the AWS IoT quotas (internal/iotapi, internal/iotquota).
package operate

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/sphere-jitr/sphere-jitr/internal/azsphere"
	"github.com/sphere-jitr/sphere-jitr/internal/caexpiry"
	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// IoTAPI is the part of the AWS IoT control plane the operations use, with the SDK's signatures.
type IoTAPI interface {
	ListThings(ctx context.Context, in *iot.ListThingsInput, optFns ...func(*iot.Options)) (*iot.ListThingsOutput, error)
	DescribeThing(ctx context.Context, in *iot.DescribeThingInput, optFns ...func(*iot.Options)) (*iot.DescribeThingOutput, error)
	ListThingPrincipals(ctx context.Context, in *iot.ListThingPrincipalsInput, optFns ...func(*iot.Options)) (*iot.ListThingPrincipalsOutput, error)
	ListCertificatesByCA(ctx context.Context, in *iot.ListCertificatesByCAInput, optFns ...func(*iot.Options)) (*iot.ListCertificatesByCAOutput, error)
	DescribeCertificate(ctx context.Context, in *iot.DescribeCertificateInput, optFns ...func(*iot.Options)) (*iot.DescribeCertificateOutput, error)
	UpdateCertificate(ctx context.Context, in *iot.UpdateCertificateInput, optFns ...func(*iot.Options)) (*iot.UpdateCertificateOutput, error)
	DetachPolicy(ctx context.Context, in *iot.DetachPolicyInput, optFns ...func(*iot.Options)) (*iot.DetachPolicyOutput, error)
	DetachThingPrincipal(ctx context.Context, in *iot.DetachThingPrincipalInput, optFns ...func(*iot.Options)) (*iot.DetachThingPrincipalOutput, error)
	DescribeCACertificate(ctx context.Context, in *iot.DescribeCACertificateInput, optFns ...func(*iot.Options)) (*iot.DescribeCACertificateOutput, error)
}

// DenyListAPI is the part of DynamoDB the operations use on the deny-list table.
type DenyListAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var (
	_ IoTAPI      = (*iot.Client)(nil)
	_ DenyListAPI = (*dynamodb.Client)(nil)
)

// Stack is what the operations need to know of the deployed stack (from its outputs).
type Stack struct {
	Name          string   // the stack name: the provisionedBy attribute of its things
	CAIDs         []string // the stack's tenant CA certificate ids
	DevicePolicy  string
	DenyListTable string
	// RegistrationQueueURL and DeadLetterQueueURL are the JITR function's queues (status reads their depth); empty
	// for a stack deployed before they were outputs.
	RegistrationQueueURL string
	DeadLetterQueueURL   string
}

// MaxPageSize is the largest page AWS IoT's ListThings and ListCertificatesByCA return.
const MaxPageSize = 250

// Fleet runs the operations.
type Fleet struct {
	iot      IoTAPI
	index    IndexAPI // fleet indexing: status, device connectivity, stale (WithIndex)
	queues   QueueAPI // the JITR function's queues: status (WithQueues)
	db       DenyListAPI
	stack    Stack
	progress io.Writer
	pageSize int32
	now      func() time.Time
	actor    string

	// why's sources (WithDiagnosis): CloudWatch Logs, the stack's log groups, the dead-letter queue.
	logs      LogsAPI
	logGroups []string
	peek      PeekAPI
	// decommission's clients (WithDecommission).
	deleter    DeleteAPI
	shadows    ShadowAPI
	denyUpdate DenyListUpdateAPI
}

// Option customises a Fleet.
type Option func(*Fleet)

// WithProgress sets where progress lines of long listings go (default: nowhere).
func WithProgress(w io.Writer) Option { return func(f *Fleet) { f.progress = w } }

// WithPageSize sets the page size of the list calls (1..MaxPageSize; default MaxPageSize).
func WithPageSize(n int) Option {
	return func(f *Fleet) {
		if n > 0 && n <= MaxPageSize {
			f.pageSize = int32(n)
		}
	}
}

// WithClock sets the clock (ages, days left, revocation time).
func WithClock(now func() time.Time) Option { return func(f *Fleet) { f.now = now } }

// WithActor sets who revokes, written to the deny-list entry (default "fleetctl").
func WithActor(a string) Option { return func(f *Fleet) { f.actor = a } }

// New returns a Fleet over the given clients. The IoT client should carry RateLimit and the retryer of package
// iotapi; cmd/fleetctl builds it so.
func New(iotc IoTAPI, db DenyListAPI, stack Stack, opts ...Option) *Fleet {
	f := &Fleet{iot: iotc, db: db, stack: stack, progress: io.Discard, pageSize: MaxPageSize, now: time.Now, actor: "fleetctl"}
	for _, o := range opts {
		o(f)
	}
	return f
}

func (f *Fleet) logf(format string, args ...any) { fmt.Fprintf(f.progress, format+"\n", args...) }

// Certificate is a device certificate of one of the stack's CAs.
type Certificate struct {
	ID         string    `json:"certificateId"`
	CAID       string    `json:"caCertificateId"`
	Status     string    `json:"status"`
	Registered time.Time `json:"registered"` // when AWS IoT registered it (JITR: the device's first connection with it)
	// From the certificate itself, for the certificates that were described (ACTIVE ones in status).
	Thing     string    `json:"thingName,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
}

// certificatesOfCAs lists every certificate of the stack's CAs, page after page.
func (f *Fleet) certificatesOfCAs(ctx context.Context) ([]Certificate, error) {
	var out []Certificate
	for _, ca := range f.stack.CAIDs {
		var marker *string
		for page := 1; ; page++ {
			res, err := f.iot.ListCertificatesByCA(ctx, &iot.ListCertificatesByCAInput{CaCertificateId: aws.String(ca), Marker: marker, PageSize: aws.Int32(f.pageSize)})
			if err != nil {
				return nil, fmt.Errorf("list certificates of CA %s: %w", ca, err)
			}
			for _, c := range res.Certificates {
				out = append(out, Certificate{ID: aws.ToString(c.CertificateId), CAID: ca, Status: string(c.Status), Registered: aws.ToTime(c.CreationDate)})
			}
			f.logf("certificates of CA %s: page %d, %d listed", short(ca), page, len(out))
			if aws.ToString(res.NextMarker) == "" {
				break
			}
			marker = res.NextMarker
		}
	}
	return out, nil
}

// describe fills in the thing and validity of c from its PEM.
func (f *Fleet) describe(ctx context.Context, c *Certificate) error {
	out, err := f.iot.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(c.ID)})
	if iotapi.IsNotFound(err) {
		c.Status = "DELETED"
		return nil
	}
	if err != nil {
		return fmt.Errorf("describe certificate %s: %w", c.ID, err)
	}
	d := out.CertificateDescription
	c.Status = string(d.Status)
	cert, err := azsphere.ParseCertificate([]byte(aws.ToString(d.CertificatePem)))
	if err != nil {
		return nil // not readable: left without thing and validity
	}
	c.NotBefore, c.NotAfter = cert.NotBefore, cert.NotAfter
	if thing, err := azsphere.DeviceIdentity(cert); err == nil {
		c.Thing = thing
	}
	return nil
}

// things lists the things the stack provisioned, page after page.
func (f *Fleet) things(ctx context.Context) ([]types.ThingAttribute, error) {
	var out []types.ThingAttribute
	var next *string
	for page := 1; ; page++ {
		res, err := f.iot.ListThings(ctx, &iot.ListThingsInput{
			AttributeName: aws.String(contract.AttrProvisionedBy), AttributeValue: aws.String(f.stack.Name),
			MaxResults: aws.Int32(f.pageSize), NextToken: next,
		})
		if err != nil {
			return nil, fmt.Errorf("list things provisioned by %s: %w", f.stack.Name, err)
		}
		for _, th := range res.Things {
			if th.Attributes[contract.AttrProvisionedBy] == f.stack.Name {
				out = append(out, th)
			}
		}
		f.logf("things: page %d, %d listed", page, len(out))
		if aws.ToString(res.NextToken) == "" {
			return out, nil
		}
		next = res.NextToken
	}
}

// DenyEntry is one device on the deny-list.
type DenyEntry struct {
	Thing     string `json:"thingName"`
	RevokedAt string `json:"revokedAt,omitempty"`
	Reason    string `json:"reason,omitempty"`
	RevokedBy string `json:"revokedBy,omitempty"`
}

func entryOf(item map[string]ddbtypes.AttributeValue) DenyEntry {
	s := func(k string) string {
		if v, ok := item[k].(*ddbtypes.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	return DenyEntry{Thing: s(contract.DenyListKey), RevokedAt: s(contract.DenyListRevokedAt), Reason: s(contract.DenyListReason), RevokedBy: s(contract.DenyListRevokedBy)}
}

// DenyList returns every entry of the deny-list, page after page.
func (f *Fleet) DenyList(ctx context.Context) ([]DenyEntry, error) {
	var out []DenyEntry
	var start map[string]ddbtypes.AttributeValue
	for {
		res, err := f.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(f.stack.DenyListTable), ExclusiveStartKey: start, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("read deny-list %s: %w", f.stack.DenyListTable, err)
		}
		for _, item := range res.Items {
			out = append(out, entryOf(item))
		}
		if len(res.LastEvaluatedKey) == 0 {
			sort.Slice(out, func(i, j int) bool { return out[i].Thing < out[j].Thing })
			return out, nil
		}
		start = res.LastEvaluatedKey
	}
}

// Device is one device of the fleet in the status view.
type Device struct {
	Thing         string `json:"thingName"`
	ProvisionedAt string `json:"provisionedAt,omitempty"`
	// Active is the device's ACTIVE certificate (the newest if, briefly during a rotation, there are two).
	Active *Certificate `json:"activeCertificate,omitempty"`
	// ActiveCount is the number of ACTIVE certificates naming the device.
	ActiveCount int  `json:"activeCertificates"`
	Denied      bool `json:"denied"`
}

// Status is the fleet at one time, as the registry walk (WalkStatus) sees it.
type Status struct {
	At      time.Time      `json:"at"`
	Devices []Device       `json:"devices"`
	ByState map[string]int `json:"certificatesByStatus"`
	Totals  struct {
		Devices             int `json:"devices"`
		WithActive          int `json:"withActiveCertificate"`
		WithoutActive       int `json:"withoutActiveCertificate"`
		Denied              int `json:"denied"`
		Certificates        int `json:"certificates"`
		ActiveWithoutDevice int `json:"activeCertificatesWithoutThing"`
	} `json:"totals"`
}

// WalkStatus walks the registry: it lists the stack's things, the certificates of its CAs and the deny-list, and
// describes the ACTIVE certificates (NotBefore, NotAfter, the device they name). Calls: ListThings and
// ListCertificatesByCA per page, one Scan per deny-list page, one DescribeCertificate per ACTIVE certificate —
// about 200 s per 1000 devices at fleetctl's share of the quotas. Status (index.go) answers from fleet indexing.
func (f *Fleet) WalkStatus(ctx context.Context) (*Status, error) {
	st := &Status{At: f.now().UTC(), ByState: map[string]int{}}
	things, err := f.things(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := f.certificatesOfCAs(ctx)
	if err != nil {
		return nil, err
	}
	denied, err := f.DenyList(ctx)
	if err != nil {
		return nil, err
	}
	isDenied := map[string]bool{}
	for _, d := range denied {
		isDenied[d.Thing] = true
	}
	byThing := map[string]*Device{}
	for _, th := range things {
		name := aws.ToString(th.ThingName)
		st.Devices = append(st.Devices, Device{Thing: name, ProvisionedAt: th.Attributes[contract.AttrProvisionedAt], Denied: isDenied[name]})
	}
	sort.Slice(st.Devices, func(i, j int) bool { return st.Devices[i].Thing < st.Devices[j].Thing })
	for i := range st.Devices {
		byThing[st.Devices[i].Thing] = &st.Devices[i]
	}
	var active []*Certificate
	for i := range certs {
		if certs[i].Status == string(types.CertificateStatusActive) {
			active = append(active, &certs[i])
		}
	}
	for i, c := range active {
		if err := f.describe(ctx, c); err != nil {
			return nil, err
		}
		if (i+1)%50 == 0 || i+1 == len(active) {
			f.logf("ACTIVE certificates described: %d/%d", i+1, len(active))
		}
	}
	for i := range certs {
		c := &certs[i]
		st.ByState[c.Status]++
		if c.Status != string(types.CertificateStatusActive) {
			continue
		}
		d := byThing[c.Thing]
		if d == nil {
			st.Totals.ActiveWithoutDevice++
			continue
		}
		d.ActiveCount++
		if d.Active == nil || c.NotBefore.After(d.Active.NotBefore) {
			d.Active = c
		}
	}
	st.Totals.Devices, st.Totals.Certificates = len(st.Devices), len(certs)
	for _, d := range st.Devices {
		if d.Active != nil {
			st.Totals.WithActive++
		} else {
			st.Totals.WithoutActive++
		}
		if d.Denied {
			st.Totals.Denied++
		}
	}
	return st, nil
}

// Certificates lists the certificates of the stack's CAs, only those of the given status when status is set.
func (f *Fleet) Certificates(ctx context.Context, status string) ([]Certificate, error) {
	certs, err := f.certificatesOfCAs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Certificate
	for _, c := range certs {
		if status == "" || strings.EqualFold(c.Status, status) {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Registered.Before(out[j].Registered) })
	return out, nil
}

// DeviceDetail is one device in detail.
type DeviceDetail struct {
	Thing        string            `json:"thingName"`
	Exists       bool              `json:"thingExists"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Certificates []Certificate     `json:"certificates"` // attached to the thing
	Denied       *DenyEntry        `json:"denied,omitempty"`
	// Connectivity is the device's entry in the fleet index: connected, since when, why it disconnected.
	Connectivity *Connectivity `json:"connectivity,omitempty"`
}

// Device describes one device: its thing, its connectivity (fleet index), the certificates attached to it, its
// deny-list entry.
func (f *Fleet) Device(ctx context.Context, deviceID string) (*DeviceDetail, error) {
	thing, err := thingName(deviceID)
	if err != nil {
		return nil, err
	}
	d := &DeviceDetail{Thing: thing}
	out, err := f.iot.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(thing)})
	switch {
	case iotapi.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("describe thing %s: %w", thing, err)
	default:
		d.Exists, d.Attributes = true, out.Attributes
		if d.Connectivity, err = f.connectivity(ctx, thing); err != nil {
			return nil, err
		}
		certs, err := f.attached(ctx, thing)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if err := f.describe(ctx, &c); err != nil {
				return nil, err
			}
			d.Certificates = append(d.Certificates, c)
		}
	}
	entry, err := f.denyEntry(ctx, thing)
	if err != nil {
		return nil, err
	}
	d.Denied = entry
	return d, nil
}

// attached lists the certificates attached to the thing, page after page.
func (f *Fleet) attached(ctx context.Context, thing string) ([]Certificate, error) {
	var out []Certificate
	pages := iot.NewListThingPrincipalsPaginator(f.iot, &iot.ListThingPrincipalsInput{ThingName: aws.String(thing)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if iotapi.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list principals of thing %s: %w", thing, err)
		}
		for _, arn := range page.Principals {
			if i := strings.LastIndex(arn, ":cert/"); i >= 0 {
				out = append(out, Certificate{ID: arn[i+len(":cert/"):], Thing: thing})
			}
		}
	}
	return out, nil
}

func (f *Fleet) denyEntry(ctx context.Context, thing string) (*DenyEntry, error) {
	out, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.stack.DenyListTable), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: thing}}})
	if err != nil {
		return nil, fmt.Errorf("read deny-list entry of %s: %w", thing, err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	e := entryOf(out.Item)
	return &e, nil
}

// Revocation is what Revoke did.
type Revocation struct {
	Thing   string    `json:"thingName"`
	Entry   DenyEntry `json:"denyListEntry"`
	Revoked []string  `json:"revokedCertificates"` // ids, REVOKED and detached from thing and policy
}

// Revoke shuts a device out: first its deny-list entry (so the JITR function refuses every certificate it has not
// yet provisioned), then each certificate attached to its thing is REVOKED — AWS IoT disconnects a connection
// whose certificate leaves ACTIVE within minutes and refuses it afterwards — and detached from the device policy
// and the thing. The thing stays, so `allow` provisions the device again into it. A second pass catches a
// certificate a JITR invocation attached while the first ran (it read the deny-list before the entry existed).
func (f *Fleet) Revoke(ctx context.Context, deviceID, reason string) (*Revocation, error) {
	thing, err := thingName(deviceID)
	if err != nil {
		return nil, err
	}
	r := &Revocation{Thing: thing, Entry: DenyEntry{Thing: thing, RevokedAt: f.now().UTC().Format(time.RFC3339), Reason: reason, RevokedBy: f.actor}}
	item := map[string]ddbtypes.AttributeValue{
		contract.DenyListKey:       &ddbtypes.AttributeValueMemberS{Value: thing},
		contract.DenyListRevokedAt: &ddbtypes.AttributeValueMemberS{Value: r.Entry.RevokedAt},
		contract.DenyListRevokedBy: &ddbtypes.AttributeValueMemberS{Value: f.actor},
	}
	if reason != "" {
		item[contract.DenyListReason] = &ddbtypes.AttributeValueMemberS{Value: reason}
	}
	if _, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.stack.DenyListTable), Item: item}); err != nil {
		return nil, fmt.Errorf("put %s on the deny-list: %w", thing, err)
	}
	for pass := 1; pass <= 2; pass++ {
		certs, err := f.attached(ctx, thing)
		if err != nil {
			return r, err
		}
		for _, c := range certs {
			if err := f.revokeCertificate(ctx, thing, c.ID); err != nil {
				return r, err
			}
			r.Revoked = append(r.Revoked, c.ID)
			f.logf("certificate %s of %s: REVOKED, detached from policy and thing", short(c.ID), short(thing))
		}
	}
	return r, nil
}

func (f *Fleet) revokeCertificate(ctx context.Context, thing, id string) error {
	arn, err := f.certificateARN(ctx, id)
	if err != nil || arn == "" {
		return err
	}
	if _, err := f.iot.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: types.CertificateStatusRevoked}); err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("revoke certificate %s: %w", id, err)
	}
	if _, err := f.iot.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(f.stack.DevicePolicy), Target: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("detach policy %s from certificate %s: %w", f.stack.DevicePolicy, id, err)
	}
	if _, err := f.iot.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(thing), Principal: aws.String(arn)}); err != nil && !iotapi.IsNotFound(err) {
		return fmt.Errorf("detach certificate %s from thing %s: %w", id, thing, err)
	}
	return nil
}

func (f *Fleet) certificateARN(ctx context.Context, id string) (string, error) {
	out, err := f.iot.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
	if iotapi.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("describe certificate %s: %w", id, err)
	}
	return aws.ToString(out.CertificateDescription.CertificateArn), nil
}

// Allow takes the device off the deny-list: the certificate of its next boot is provisioned. It reports whether
// the device was on it.
func (f *Fleet) Allow(ctx context.Context, deviceID string) (thing string, wasDenied bool, err error) {
	thing, err = thingName(deviceID)
	if err != nil {
		return "", false, err
	}
	out, err := f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.stack.DenyListTable), ReturnValues: ddbtypes.ReturnValueAllOld,
		Key: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: thing}}})
	if err != nil {
		return thing, false, fmt.Errorf("take %s off the deny-list: %w", thing, err)
	}
	return thing, len(out.Attributes) > 0, nil
}

// CAs judges the stack's tenant CAs now.
func (f *Fleet) CAs(ctx context.Context) (caexpiry.Report, error) {
	cas, err := caexpiry.Describe(ctx, f.iot, f.stack.CAIDs)
	if err != nil {
		return caexpiry.Report{}, err
	}
	return caexpiry.Assess(cas, f.now()), nil
}

// thingName checks an Azure Sphere device ID (any case) or thing name and returns the thing name.
func thingName(deviceID string) (string, error) {
	thing, err := azsphere.ThingName(strings.TrimSpace(deviceID))
	if err != nil {
		return "", fmt.Errorf("%q is not an Azure Sphere device ID (128 hexadecimal characters; 'az sphere device show-attached' prints it): %w", deviceID, err)
	}
	return thing, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
