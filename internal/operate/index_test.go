package operate_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
	"github.com/sphere-jitr/sphere-jitr/internal/iotquota"
	"github.com/sphere-jitr/sphere-jitr/internal/operate"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

var moto *motoserver.Server

// AWS IoT's quotas stay on in moto: the set-up is exempt (the emulator's internal header), fleetctl's calls are not.
func TestMain(m *testing.M) { os.Exit(motoserver.RunTestsWith(motoserver.Options{}, m, &moto)) }

const stackName = "SphereJitrOperateTest"

// counter counts the requests fleetctl's clients send, by service.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	service := "?"
	if auth := req.Header.Get("Authorization"); auth != "" {
		if i := strings.Index(auth, "Credential="); i >= 0 {
			if parts := strings.Split(strings.SplitN(auth[i:], ",", 2)[0], "/"); len(parts) >= 4 {
				service = parts[3]
			}
		}
	}
	c.mu.Lock()
	c.calls[service]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.calls {
		n += v
	}
	return n
}

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.calls)
}

func awsConfig(transport http.RoundTripper) aws.Config {
	cfg := aws.Config{Region: motoserver.Region, BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider(motoserver.AccessKeyID, motoserver.SecretAccessKey, ""),
		Retryer:     func() aws.Retryer { return iotapi.NewRetryer(iotapi.DefaultRetryPolicy) }}
	if transport != nil {
		cfg.HTTPClient = &http.Client{Transport: transport}
	}
	return cfg
}

// internal exempts the set-up's calls from the quotas.
func internal(o *iot.Options) {
	o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(contract.EmulatorInternalHeader, "1"))
}

// world is a moto account with the stack's deny-list, queues and fleet indexing on.
type world struct {
	admin       *iot.Client
	stack       operate.Stack
	ddb         *dynamodb.Client
	sqs         *sqs.Client
	now         time.Time
	provisioned time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := awsConfig(nil)
	w := &world{admin: iot.NewFromConfig(cfg), ddb: dynamodb.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg),
		now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	w.provisioned = w.now.Add(-90 * 24 * time.Hour)
	w.stack = operate.Stack{Name: stackName, DenyListTable: "deny-list"}
	if _, err := w.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String(w.stack.DenyListTable), BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(contract.DenyListKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(contract.DenyListKey), KeyType: ddbtypes.KeyTypeHash}}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []*string{&w.stack.RegistrationQueueURL, &w.stack.DeadLetterQueueURL} {
		out, err := w.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("q%p", q))})
		if err != nil {
			t.Fatal(err)
		}
		*q = aws.ToString(out.QueueUrl)
	}
	if _, err := w.admin.UpdateIndexingConfiguration(ctx, &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: &types.ThingIndexingConfiguration{
		ThingIndexingMode: types.ThingIndexingModeRegistry, ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeStatus}}, internal); err != nil {
		t.Fatal(err)
	}
	return w
}

// things registers n things of stack (names prefix-0000...), concurrently, exempt from the quotas.
func (w *world) things(t testing.TB, stack, prefix string, n int) []string {
	t.Helper()
	names := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				names[i] = fmt.Sprintf("%s-%05d", prefix, i)
				_, err := w.admin.CreateThing(context.Background(), &iot.CreateThingInput{ThingName: aws.String(names[i]),
					AttributePayload: &types.AttributePayload{Attributes: map[string]string{
						contract.AttrProvisionedBy: stack, contract.AttrProvisionedAt: w.provisioned.Format(time.RFC3339)}}}, internal)
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return names
}

// fleet is fleetctl's view: paced to half the quotas, as cmd/fleetctl builds it, its calls counted.
func (w *world) fleet(calls *counter) *operate.Fleet {
	cfg := awsConfig(calls)
	iotc := iot.NewFromConfig(cfg, func(o *iot.Options) {
		o.APIOptions = append(o.APIOptions, iotapi.WithRateLimits(iotapi.RateLimits(iotquota.Defaults()).Share(0.5), iotapi.PaceUnlisted(iotquota.Unlisted*0.5)))
	})
	return operate.New(iotc, dynamodb.NewFromConfig(cfg), w.stack, operate.WithIndex(iotc), operate.WithQueues(sqs.NewFromConfig(cfg)),
		operate.WithClock(func() time.Time { return w.now }))
}

func TestStatusFromTheIndex(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ours := w.things(t, stackName, "dev", 230)
	w.things(t, "AnotherStack", "other", 20)
	var states []motoserver.Connectivity
	for _, n := range ours[:150] {
		states = append(states, motoserver.Connectivity{ClientID: n, Connected: true, Timestamp: motoserver.Millis(w.now.Add(-time.Hour))})
	}
	if err := moto.SetConnectivity(ctx, states...); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := w.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(w.stack.RegistrationQueueURL), MessageBody: aws.String(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(w.stack.DeadLetterQueueURL), MessageBody: aws.String("dead")}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.stack.DenyListTable),
		Item: map[string]ddbtypes.AttributeValue{contract.DenyListKey: &ddbtypes.AttributeValueMemberS{Value: ours[0]}}}); err != nil {
		t.Fatal(err)
	}
	calls := &counter{calls: map[string]int{}}
	st, err := w.fleet(calls).Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want := operate.FleetStatus{At: w.now, Devices: 230, Connected: 150, Disconnected: 80, Denied: 1, PendingRegistrations: 3, DeadLettered: 1}
	if fmt.Sprint(*st) != fmt.Sprint(want) {
		t.Errorf("status = %+v, want %+v", *st, want)
	}
	if calls.total() > 20 {
		t.Errorf("status made %d calls (%s), want at most 20 whatever the fleet's size", calls.total(), calls)
	}
}

func TestDeviceConnectivityAndStale(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	names := w.things(t, stackName, "dev", 5)
	w.things(t, "AnotherStack", "other", 1)
	day := 24 * time.Hour
	if err := moto.SetConnectivity(ctx,
		motoserver.Connectivity{ClientID: names[0], Connected: true, Timestamp: motoserver.Millis(w.now.Add(-2 * day))},
		motoserver.Connectivity{ClientID: names[1], Timestamp: motoserver.Millis(w.now.Add(-40 * day)), DisconnectReason: "MQTT_KEEP_ALIVE_TIMEOUT"},
		motoserver.Connectivity{ClientID: names[2], Timestamp: motoserver.Millis(w.now.Add(-3 * day)), DisconnectReason: "CLIENT_INITIATED_DISCONNECT"},
		motoserver.Connectivity{ClientID: "other-00000", Timestamp: motoserver.Millis(w.now.Add(-60 * day)), DisconnectReason: "CONNECTION_LOST"},
	); err != nil {
		t.Fatal(err)
	}
	// names[3], names[4]: never connected, provisioned 90 days ago.
	f := w.fleet(&counter{calls: map[string]int{}})
	stale, err := f.Stale(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range stale {
		got = append(got, d.Thing+"/"+d.DisconnectReason)
	}
	want := []string{names[3] + "/", names[4] + "/", names[1] + "/MQTT_KEEP_ALIVE_TIMEOUT"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stale -days 30 = %v, want %v (never connected first, then by last seen; other stacks left out)", got, want)
	}
	if stale, err := f.Stale(ctx, 1); err != nil || len(stale) != 4 {
		t.Errorf("stale -days 1: %d devices, %v; want 4 (all but the connected one)", len(stale), err)
	}
}

// device ID adds the connectivity from the index: connected or not, since when, the disconnect reason.
func TestDeviceAddsConnectivity(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := strings.Repeat("ab", 64) // an Azure Sphere device id: 128 hexadecimal characters; its thing name is lower-case
	if _, err := w.admin.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(id), AttributePayload: &types.AttributePayload{
		Attributes: map[string]string{contract.AttrProvisionedBy: stackName}}}, internal); err != nil {
		t.Fatal(err)
	}
	at := w.now.Add(-5 * time.Hour)
	if err := moto.SetConnectivity(ctx, motoserver.Connectivity{ClientID: id, Timestamp: motoserver.Millis(at), DisconnectReason: "DUPLICATE_CLIENTID"}); err != nil {
		t.Fatal(err)
	}
	calls := &counter{calls: map[string]int{}}
	d, err := w.fleet(calls).Device(ctx, strings.ToUpper(id))
	if err != nil {
		t.Fatal(err)
	}
	if c := d.Connectivity; c == nil || c.Connected || !c.Since.Equal(at) || c.DisconnectReason != "DUPLICATE_CLIENTID" {
		t.Errorf("device connectivity = %+v, want disconnected at %s, DUPLICATE_CLIENTID", c, at)
	}
	if calls.total() > 6 {
		t.Errorf("device made %d calls (%s)", calls.total(), calls)
	}
}

func TestStatusSaysWhenTheIndexIsOff(t *testing.T) {
	w := newWorld(t)
	if _, err := w.admin.UpdateIndexingConfiguration(context.Background(), &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: &types.ThingIndexingConfiguration{
		ThingIndexingMode: types.ThingIndexingModeOff, ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeOff}}, internal); err != nil {
		t.Fatal(err)
	}
	f := w.fleet(&counter{calls: map[string]int{}})
	_, err := f.Status(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "fleet indexing is off") {
		t.Errorf("status with indexing off: %v, want the fix for fleet indexing being off", err)
	}
	// device still describes the device, without connectivity.
	id := strings.Repeat("cd", 64)
	if _, err := w.admin.CreateThing(context.Background(), &iot.CreateThingInput{ThingName: aws.String(id)}, internal); err != nil {
		t.Fatal(err)
	}
	if d, err := f.Device(context.Background(), id); err != nil || !d.Exists || d.Connectivity != nil {
		t.Errorf("device with indexing off: %+v, %v; want the device without connectivity", d, err)
	}
}
