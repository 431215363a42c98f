package operate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
)

// IndexAPI is the part of AWS IoT fleet indexing the fleet-wide reads use, with the SDK's signatures.
type IndexAPI interface {
	SearchIndex(ctx context.Context, in *iot.SearchIndexInput, optFns ...func(*iot.Options)) (*iot.SearchIndexOutput, error)
	GetStatistics(ctx context.Context, in *iot.GetStatisticsInput, optFns ...func(*iot.Options)) (*iot.GetStatisticsOutput, error)
}

// QueueAPI is the part of SQS status uses on the JITR function's queues.
type QueueAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

var (
	_ IndexAPI = (*iot.Client)(nil)
	_ QueueAPI = (*sqs.Client)(nil)
)

// WithIndex gives the Fleet AWS IoT fleet indexing (status, the device's connectivity, stale).
func WithIndex(api IndexAPI) Option { return func(f *Fleet) { f.index = api } }

// WithQueues gives the Fleet the SQS client status reads the JITR function's queues with.
func WithQueues(api QueueAPI) Option { return func(f *Fleet) { f.queues = api } }

// SearchPageSize is the largest page SearchIndex returns ("This maximum number cannot exceed 100").
const SearchPageSize = 100

// ErrIndexOff is returned when the account has no thing index (fleet indexing off): the stack turns it on, so
// the stack is not deployed in this account and Region, or was deployed before it did.
var ErrIndexOff = errors.New("AWS IoT fleet indexing is off in this account and Region: deploy the stack (it turns " +
	"registry and connectivity indexing on), or 'aws iot update-indexing-configuration --thing-indexing-configuration " +
	"thingIndexingMode=REGISTRY,thingConnectivityIndexingMode=STATUS'")

func indexErr(what string, err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w", what, ErrIndexOff)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ours is the query term that selects the stack's things.
func (f *Fleet) ours() string {
	return contract.ThingAttributeField(contract.AttrProvisionedBy) + ":" + f.stack.Name
}

func (f *Fleet) count(ctx context.Context, query string) (int, error) {
	if f.index == nil {
		return 0, errors.New("no fleet-indexing client (operate.WithIndex)")
	}
	out, err := f.index.GetStatistics(ctx, &iot.GetStatisticsInput{QueryString: aws.String(query)})
	if err != nil {
		return 0, indexErr("count "+query, err)
	}
	if out.Statistics == nil {
		return 0, nil
	}
	return int(out.Statistics.Count), nil
}

// FleetStatus is the fleet at one time, from fleet indexing and the JITR function's queues.
type FleetStatus struct {
	At           time.Time `json:"at"`
	Devices      int       `json:"devices"`      // things the stack provisioned
	Connected    int       `json:"connected"`    // of them, connected now
	Disconnected int       `json:"disconnected"` // of them, not connected (never, or not any more)
	Denied       int       `json:"denied"`       // devices on the deny-list
	// PendingRegistrations are the certificate-registered events waiting in the registration queue (visible,
	// in flight, delayed): certificates PENDING_ACTIVATION the function has not yet handled. -1: unknown.
	PendingRegistrations int `json:"pendingRegistrations"`
	// DeadLettered are the registrations the function gave up on (its dead-letter queue). -1: unknown.
	DeadLettered int `json:"deadLettered"`
	// CertificatesByStatus counts the certificates of the stack's CAs by status; only with certificates asked
	// for, because AWS IoT has no count of them: it is a ListCertificatesByCA walk (a call per 250).
	CertificatesByStatus map[string]int `json:"certificatesByStatus,omitempty"`
}

// Status answers from fleet indexing (GetStatistics: devices, connected), SQS (the queues' depth) and the
// deny-list (a count): a handful of calls whatever the fleet's size. With certificates it also counts the stack's
// certificates by status, walking ListCertificatesByCA (no DescribeCertificate).
func (f *Fleet) Status(ctx context.Context, certificates bool) (*FleetStatus, error) {
	st := &FleetStatus{At: f.now().UTC(), PendingRegistrations: -1, DeadLettered: -1}
	var err error
	if st.Devices, err = f.count(ctx, f.ours()); err != nil {
		return nil, err
	}
	if st.Connected, err = f.count(ctx, f.ours()+" AND connectivity.connected:true"); err != nil {
		return nil, err
	}
	st.Disconnected = st.Devices - st.Connected
	if st.Denied, err = f.deniedCount(ctx); err != nil {
		return nil, err
	}
	if f.queues != nil && f.stack.RegistrationQueueURL != "" {
		if st.PendingRegistrations, err = f.depth(ctx, f.stack.RegistrationQueueURL); err != nil {
			return nil, err
		}
	}
	if f.queues != nil && f.stack.DeadLetterQueueURL != "" {
		if st.DeadLettered, err = f.depth(ctx, f.stack.DeadLetterQueueURL); err != nil {
			return nil, err
		}
	}
	if certificates {
		certs, err := f.certificatesOfCAs(ctx)
		if err != nil {
			return nil, err
		}
		st.CertificatesByStatus = map[string]int{}
		for _, c := range certs {
			st.CertificatesByStatus[c.Status]++
		}
	}
	return st, nil
}

// depth is the number of messages in a queue: visible, in flight and delayed.
func (f *Fleet) depth(ctx context.Context, url string) (int, error) {
	out, err := f.queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return 0, fmt.Errorf("read the depth of queue %s: %w", url, err)
	}
	n := 0
	for _, v := range out.Attributes {
		m, _ := strconv.Atoi(v)
		n += m
	}
	return n, nil
}

func (f *Fleet) deniedCount(ctx context.Context) (int, error) {
	n := 0
	var start map[string]ddbtypes.AttributeValue
	for {
		res, err := f.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(f.stack.DenyListTable), Select: ddbtypes.SelectCount, ExclusiveStartKey: start})
		if err != nil {
			return 0, fmt.Errorf("count the deny-list %s: %w", f.stack.DenyListTable, err)
		}
		n += int(res.Count)
		if len(res.LastEvaluatedKey) == 0 {
			return n, nil
		}
		start = res.LastEvaluatedKey
	}
}

// Connectivity is a device's connection state as fleet indexing has it.
type Connectivity struct {
	Connected bool `json:"connected"`
	// Since is when it last connected (connected) or disconnected; zero when AWS IoT has no time (never connected,
	// or disconnected for long: AWS drops the details after about an hour).
	Since            time.Time `json:"since,omitzero"`
	DisconnectReason string    `json:"disconnectReason,omitempty"` // AWS IoT's value, e.g. MQTT_KEEP_ALIVE_TIMEOUT
}

func connectivityOf(c *types.ThingConnectivity) *Connectivity {
	if c == nil {
		return nil
	}
	out := &Connectivity{Connected: aws.ToBool(c.Connected), DisconnectReason: aws.ToString(c.DisconnectReason)}
	if c.Timestamp != nil {
		out.Since = time.UnixMilli(*c.Timestamp).UTC()
	}
	return out
}

// connectivity is the device's entry in the index (SearchIndex thingName:<thing>); nil when the thing is not in it
// or the account has no index.
func (f *Fleet) connectivity(ctx context.Context, thing string) (*Connectivity, error) {
	if f.index == nil {
		return nil, nil
	}
	out, err := f.index.SearchIndex(ctx, &iot.SearchIndexInput{QueryString: aws.String("thingName:" + thing), MaxResults: aws.Int32(1)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return nil, nil // fleet indexing off: the rest of the device's view still stands
	}
	if err != nil {
		return nil, indexErr("look up "+thing+" in the fleet index", err)
	}
	for _, d := range out.Things {
		if aws.ToString(d.ThingName) == thing {
			return connectivityOf(d.Connectivity), nil
		}
	}
	return nil, nil
}

// StaleDevice is a device of the stack that has not connected for the days asked.
type StaleDevice struct {
	Thing            string    `json:"thingName"`
	LastSeen         time.Time `json:"lastSeen,omitzero"` // zero: never connected, or AWS IoT no longer has the time
	DisconnectReason string    `json:"disconnectReason,omitempty"`
	ProvisionedAt    string    `json:"provisionedAt,omitempty"`
}

// Stale lists the stack's devices not connected for the last days: disconnected before the cut-off, and those
// without a connection time (never connected) provisioned before it. Two SearchIndex queries, paged by 100.
func (f *Fleet) Stale(ctx context.Context, days int) ([]StaleDevice, error) {
	if f.index == nil {
		return nil, errors.New("no fleet-indexing client (operate.WithIndex)")
	}
	cut := f.now().UTC().Add(-time.Duration(days) * 24 * time.Hour)
	base := f.ours() + " AND connectivity.connected:false"
	seen := map[string]bool{}
	var out []StaleDevice
	add := func(d types.ThingDocument) {
		name := aws.ToString(d.ThingName)
		c := connectivityOf(d.Connectivity)
		if seen[name] || c == nil || c.Connected || (!c.Since.IsZero() && !c.Since.Before(cut)) {
			return
		}
		seen[name] = true
		out = append(out, StaleDevice{Thing: name, LastSeen: c.Since, DisconnectReason: c.DisconnectReason,
			ProvisionedAt: d.Attributes[contract.AttrProvisionedAt]})
	}
	queries := []string{
		fmt.Sprintf("%s AND connectivity.timestamp<%d", base, cut.UnixMilli()),
		fmt.Sprintf("%s AND %s<%s", base, contract.ThingAttributeField(contract.AttrProvisionedAt), cut.Format(time.RFC3339)),
	}
	for _, q := range queries {
		if err := f.search(ctx, q, add); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.Before(out[j].LastSeen)
		}
		return out[i].Thing < out[j].Thing
	})
	return out, nil
}

// search pages through a query's results.
func (f *Fleet) search(ctx context.Context, query string, each func(types.ThingDocument)) error {
	var next *string
	for page := 1; ; page++ {
		out, err := f.index.SearchIndex(ctx, &iot.SearchIndexInput{QueryString: aws.String(query), MaxResults: aws.Int32(SearchPageSize), NextToken: next})
		if err != nil {
			return indexErr("search the fleet index", err)
		}
		for _, d := range out.Things {
			each(d)
		}
		f.logf("fleet index: page %d, %d things", page, len(out.Things))
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		next = out.NextToken
	}
}
