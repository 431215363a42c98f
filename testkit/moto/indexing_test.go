package moto_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// Fleet indexing as AWS answers it (testkit/moto/indexing.py): each test fails against moto without the patch.

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func enableIndexing(t *testing.T, api *iot.Client, connectivity bool) {
	t.Helper()
	cfg := &types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeRegistry,
		ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeOff}
	if connectivity {
		cfg.ThingConnectivityIndexingMode = types.ThingConnectivityIndexingModeStatus
	}
	if _, err := api.UpdateIndexingConfiguration(context.Background(), &iot.UpdateIndexingConfigurationInput{ThingIndexingConfiguration: cfg}); err != nil {
		t.Fatal(err)
	}
}

// createThings registers things as the tests' set-up, exempt from the quotas (the emulator's internal header).
func createThings(t *testing.T, api *iot.Client, stack string, names ...string) {
	t.Helper()
	internal := func(o *iot.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(contract.EmulatorInternalHeader, "1"))
		o.RetryMaxAttempts = 5 // set-up only: moto's server sometimes drops a kept-alive connection
	}
	for _, n := range names {
		_, err := api.CreateThing(context.Background(), &iot.CreateThingInput{ThingName: aws.String(n),
			AttributePayload: &types.AttributePayload{Attributes: map[string]string{
				contract.AttrProvisionedBy: stack, contract.AttrProvisionedAt: "2026-01-0" + n[len(n)-1:] + "T00:00:00Z"}}}, internal)
		if err != nil {
			t.Fatal(err)
		}
	}
}

func search(t *testing.T, api *iot.Client, query string) []types.ThingDocument {
	t.Helper()
	var out []types.ThingDocument
	var next *string
	for {
		res, err := api.SearchIndex(context.Background(), &iot.SearchIndexInput{QueryString: aws.String(query), NextToken: next})
		if err != nil {
			t.Fatalf("SearchIndex %q: %v", query, err)
		}
		out = append(out, res.Things...)
		if aws.ToString(res.NextToken) == "" {
			return out
		}
		next = res.NextToken
	}
}

func thingNames(docs []types.ThingDocument) []string {
	var out []string
	for _, d := range docs {
		out = append(out, aws.ToString(d.ThingName))
	}
	slices.Sort(out)
	return out
}

// AWS has no thing index until thingIndexingMode is on: SearchIndex answers ResourceNotFoundException.
func TestSearchIndexNeedsTheIndex(t *testing.T) {
	api := client(t)
	createThings(t, api, "S", "dev-1")
	_, err := api.SearchIndex(context.Background(), &iot.SearchIndexInput{QueryString: aws.String("thingName:dev-1")})
	if errorCode(err) != "ResourceNotFoundException" {
		t.Fatalf("SearchIndex with indexing off: %v, want ResourceNotFoundException", err)
	}
}

// Connectivity is what the broker reported; a thing that never connected is connected:false with no details;
// timestamps are epoch milliseconds.
func TestConnectivityFromTheBroker(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	enableIndexing(t, api, true)
	createThings(t, api, "S", "dev-1", "dev-2", "dev-3")
	connectedAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := moto.SetConnectivity(ctx,
		motoserver.Connectivity{ClientID: "dev-1", Connected: true, Timestamp: motoserver.Millis(connectedAt)},
		motoserver.Connectivity{ClientID: "dev-2", Connected: false, Timestamp: motoserver.Millis(connectedAt.Add(time.Hour)), DisconnectReason: "DUPLICATE_CLIENTID"},
	); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*types.ThingConnectivity{}
	for _, d := range search(t, api, "attributes.provisionedBy:S") {
		byName[aws.ToString(d.ThingName)] = d.Connectivity
	}
	if c := byName["dev-1"]; c == nil || !aws.ToBool(c.Connected) || aws.ToInt64(c.Timestamp) != connectedAt.UnixMilli() {
		t.Errorf("dev-1 connectivity = %+v, want connected at %d ms", c, connectedAt.UnixMilli())
	}
	if c := byName["dev-2"]; c == nil || aws.ToBool(c.Connected) || aws.ToString(c.DisconnectReason) != "DUPLICATE_CLIENTID" {
		t.Errorf("dev-2 connectivity = %+v, want disconnected, DUPLICATE_CLIENTID", c)
	}
	if c := byName["dev-3"]; c == nil || aws.ToBool(c.Connected) || c.Timestamp != nil || c.DisconnectReason != nil {
		t.Errorf("dev-3 (never connected) connectivity = %+v, want connected false and nothing else", c)
	}
	if got := thingNames(search(t, api, "connectivity.connected:true")); !slices.Equal(got, []string{"dev-1"}) {
		t.Errorf("connected things = %v, want [dev-1]", got)
	}
	if err := moto.SetConnectivity(ctx, motoserver.Connectivity{ClientID: "dev-1", DisconnectReason: "SLEEPY"}); err == nil {
		t.Error("a disconnect reason AWS does not have was accepted")
	}
	if c, ok, err := moto.GetConnectivity(ctx, "dev-2"); err != nil || !ok || c.DisconnectReason != "DUPLICATE_CLIENTID" {
		t.Errorf("GetConnectivity(dev-2) = %+v %v %v", c, ok, err)
	}
}

// The terms fleetctl uses: field:value, wildcards, AND/OR/NOT, ranges on connectivity.timestamp and on a string
// attribute.
func TestSearchIndexQuerySyntax(t *testing.T) {
	api := client(t)
	enableIndexing(t, api, true)
	createThings(t, api, "S", "dev-1", "dev-2", "dev-3")
	createThings(t, api, "Other", "foreign-4")
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := moto.SetConnectivity(context.Background(),
		motoserver.Connectivity{ClientID: "dev-1", Timestamp: motoserver.Millis(base), DisconnectReason: "CONNECTION_LOST"},
		motoserver.Connectivity{ClientID: "dev-2", Timestamp: motoserver.Millis(base.Add(48 * time.Hour)), DisconnectReason: "MQTT_KEEP_ALIVE_TIMEOUT"},
		motoserver.Connectivity{ClientID: "foreign-4", Timestamp: motoserver.Millis(base), DisconnectReason: "CONNECTION_LOST"},
	); err != nil {
		t.Fatal(err)
	}
	cut := motoserver.Millis(base.Add(24 * time.Hour))
	for query, want := range map[string][]string{
		"attributes.provisionedBy:S":              {"dev-1", "dev-2", "dev-3"},
		"thingName:dev-*":                         {"dev-1", "dev-2", "dev-3"},
		"thingName:dev-? AND NOT thingName:dev-2": {"dev-1", "dev-3"},
		fmt.Sprintf("attributes.provisionedBy:S AND connectivity.connected:false AND connectivity.timestamp<%d", cut): {"dev-1"},
		fmt.Sprintf("connectivity.timestamp>=%d", cut):                                                                {"dev-2"},
		"attributes.provisionedBy:S AND attributes.provisionedAt<2026-01-03T00:00:00Z":                                {"dev-1", "dev-2"},
		"(thingName:dev-1 OR thingName:foreign-4) connectivity.disconnectReason:CONNECTION_LOST":                      {"dev-1", "foreign-4"},
	} {
		if got := thingNames(search(t, api, query)); !slices.Equal(got, want) {
			t.Errorf("SearchIndex %q = %v, want %v", query, got, want)
		}
	}
}

// Pages of at most 100 with nextToken until the last.
func TestSearchIndexPages(t *testing.T) {
	api := client(t)
	enableIndexing(t, api, false)
	var names []string
	for i := range 230 {
		names = append(names, fmt.Sprintf("dev-%03d", i))
	}
	createThings(t, api, "S", names...)
	res, err := api.SearchIndex(context.Background(), &iot.SearchIndexInput{QueryString: aws.String("thingName:dev-*"), MaxResults: aws.Int32(500)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Things) != 100 || aws.ToString(res.NextToken) == "" {
		t.Errorf("first page: %d things, nextToken %q; want 100 and a token", len(res.Things), aws.ToString(res.NextToken))
	}
	if got := len(search(t, api, "thingName:dev-*")); got != 230 {
		t.Errorf("paged to the end: %d things, want 230", got)
	}
}

func TestGetStatistics(t *testing.T) {
	api := client(t)
	enableIndexing(t, api, true)
	createThings(t, api, "S", "dev-1", "dev-2", "dev-3")
	if err := moto.SetConnectivity(context.Background(), motoserver.Connectivity{ClientID: "dev-2", Connected: true}); err != nil {
		t.Fatal(err)
	}
	for query, want := range map[string]int32{"attributes.provisionedBy:S": 3, "attributes.provisionedBy:S AND connectivity.connected:true": 1} {
		res, err := api.GetStatistics(context.Background(), &iot.GetStatisticsInput{QueryString: aws.String(query)})
		if err != nil {
			t.Fatalf("GetStatistics %q: %v", query, err)
		}
		if res.Statistics == nil || res.Statistics.Count != want {
			t.Errorf("GetStatistics %q = %+v, want count %d", query, res.Statistics, want)
		}
	}
}

func TestIndexingConfigurationRefusesConnectivityWithoutRegistry(t *testing.T) {
	api := client(t)
	_, err := api.UpdateIndexingConfiguration(context.Background(), &iot.UpdateIndexingConfigurationInput{
		ThingIndexingConfiguration: &types.ThingIndexingConfiguration{ThingIndexingMode: types.ThingIndexingModeOff,
			ThingConnectivityIndexingMode: types.ThingConnectivityIndexingModeStatus}})
	if errorCode(err) != "InvalidRequestException" {
		t.Errorf("connectivity without registry indexing: %v, want InvalidRequestException", err)
	}
}

func TestFleetMetrics(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	in := &iot.CreateFleetMetricInput{MetricName: aws.String("S-ConnectedDevices"),
		QueryString:      aws.String("attributes.provisionedBy:S AND connectivity.connected:true"),
		AggregationType:  &types.AggregationType{Name: types.AggregationTypeNameStatistics, Values: []string{"count"}},
		AggregationField: aws.String("registry.version"), Period: aws.Int32(300)}
	if _, err := api.CreateFleetMetric(ctx, in); errorCode(err) != "ResourceNotFoundException" {
		t.Errorf("CreateFleetMetric without the index: %v, want ResourceNotFoundException", err)
	}
	enableIndexing(t, api, true)
	out, err := api.CreateFleetMetric(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateFleetMetric(ctx, in); errorCode(err) != "ResourceAlreadyExistsException" {
		t.Errorf("second CreateFleetMetric: %v, want ResourceAlreadyExistsException", err)
	}
	d, err := api.DescribeFleetMetric(ctx, &iot.DescribeFleetMetricInput{MetricName: in.MetricName})
	if err != nil || aws.ToString(d.QueryString) != aws.ToString(in.QueryString) || aws.ToString(d.MetricArn) != aws.ToString(out.MetricArn) {
		t.Errorf("DescribeFleetMetric = %+v, %v", d, err)
	}
	for range 2 {
		if _, err := api.DeleteFleetMetric(ctx, &iot.DeleteFleetMetricInput{MetricName: in.MetricName}); err != nil {
			t.Errorf("DeleteFleetMetric: %v", err)
		}
	}
	if _, err := api.DescribeFleetMetric(ctx, &iot.DescribeFleetMetricInput{MetricName: in.MetricName}); errorCode(err) != "ResourceNotFoundException" {
		t.Errorf("DescribeFleetMetric after delete: %v, want ResourceNotFoundException", err)
	}
}

func TestV2LoggingOptions(t *testing.T) {
	api := client(t)
	ctx := context.Background()
	if _, err := api.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{}); errorCode(err) != "NotConfiguredException" {
		t.Errorf("GetV2LoggingOptions before any Set: %v, want NotConfiguredException", err)
	}
	if _, err := api.SetV2LoggingOptions(ctx, &iot.SetV2LoggingOptionsInput{DefaultLogLevel: types.LogLevelWarn}); errorCode(err) != "InvalidRequestException" {
		t.Errorf("SetV2LoggingOptions WARN without a role: %v, want InvalidRequestException", err)
	}
	role := "arn:aws:iam::" + motoserver.AccountID + ":role/iot-logging"
	if _, err := api.SetV2LoggingOptions(ctx, &iot.SetV2LoggingOptionsInput{DefaultLogLevel: types.LogLevelWarn, RoleArn: aws.String(role)}); err != nil {
		t.Fatal(err)
	}
	got, err := api.GetV2LoggingOptions(ctx, &iot.GetV2LoggingOptionsInput{})
	if err != nil || got.DefaultLogLevel != types.LogLevelWarn || aws.ToString(got.RoleArn) != role || got.DisableAllLogs {
		t.Errorf("GetV2LoggingOptions = %+v, %v; want WARN with %s", got, err, role)
	}
}

// moto alone reports every thing connected now; AWS reports a thing that never connected as connected:false with
// no timestamp, and no connectivity at all while connectivity indexing is off.
func TestNeverConnectedIsNotConnected(t *testing.T) {
	api := client(t)
	enableIndexing(t, api, false)
	createThings(t, api, "S", "dev-1")
	if docs := search(t, api, "thingName:dev-1"); len(docs) != 1 || docs[0].Connectivity != nil {
		t.Errorf("connectivity indexing off: %d documents, connectivity %+v; want one without connectivity", len(docs), docs[0].Connectivity)
	}
	enableIndexing(t, api, true)
	docs := search(t, api, "thingName:dev-1")
	if len(docs) != 1 || docs[0].Connectivity == nil || aws.ToBool(docs[0].Connectivity.Connected) || docs[0].Connectivity.Timestamp != nil {
		t.Fatalf("never connected: %+v, want connected false and no timestamp", docs)
	}
}
