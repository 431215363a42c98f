package operate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sphere-jitr/sphere-jitr/internal/contract"
	"github.com/sphere-jitr/sphere-jitr/internal/iotapi"
)

// LogsAPI is the part of CloudWatch Logs why reads: the stack's functions' log groups and AWS IoT's v2 logs.
type LogsAPI interface {
	FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error)
}

// PeekAPI is the part of SQS why uses to look into the dead-letter queue without taking anything out of it.
type PeekAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

var (
	_ LogsAPI = (*cloudwatchlogs.Client)(nil)
	_ PeekAPI = (*sqs.Client)(nil)
)

// IoTLogGroup is the log group AWS IoT writes its v2 log entries to (infra.IoTLogGroupName).
const IoTLogGroup = "AWSIotLogsV2"

// WhyLookback is how far back why reads the logs.
const WhyLookback = 14 * 24 * time.Hour

// deadLetterPeeks bounds the receives why makes on the dead-letter queue (10 messages each).
const deadLetterPeeks = 10

// maxLogEvidence is how many of the client id's latest AWS IoT log entries a verdict shows.
const maxLogEvidence = 12

// peekVisibility hides the messages of one peek from the next receive; why makes them visible again before it
// returns, and a why that dies in between leaves them hidden this long at most.
const peekVisibility = 30

// WithDiagnosis gives the Fleet what why reads besides the registry: CloudWatch Logs and the stack's log groups
// (its functions': CloudFormation lists them among the stack's resources), and SQS to peek into the dead-letter
// queue.
func WithDiagnosis(logs LogsAPI, logGroups []string, peek PeekAPI) Option {
	return func(f *Fleet) { f.logs, f.logGroups, f.peek = logs, logGroups, peek }
}

// The verdicts of Why, one per reason a device is or is not connected.
const (
	WhyNeverSeen     = "never-seen"    // no thing, no certificate, no connection attempt on record
	WhyPending       = "pending"       // its certificate is PENDING_ACTIVATION: the JITR function has not activated it
	WhyDeadLettered  = "dead-lettered" // pending, and its registration gave up: the event is in the dead-letter queue
	WhyRefused       = "refused"       // the JITR function refused its certificate (and revoked it)
	WhyDenied        = "denied"        // the device is on the deny-list
	WhyRevoked       = "revoked"       // its certificate is REVOKED (not by the function's checks)
	WhyInactive      = "inactive"      // its certificate is INACTIVE (retired: a newer one replaced it)
	WhyDisconnected  = "disconnected"  // provisioned, connected before, disconnected now (with AWS IoT's reason)
	WhyNotConnected  = "not-connected" // provisioned, not connected since
	WhyConnected     = "connected"     // connected now
	WhyDuplicateID   = "duplicate-id"  // connected now, but connections with its client id take each other over
	whyUnknownReason = "AWS IoT gave no disconnect reason"
)

// Evidence is one fact a verdict rests on, with where it was read.
type Evidence struct {
	Source string    `json:"source"` // e.g. "registry", "fleet index", "AWSIotLogsV2", "log group <name>", "dead-letter queue"
	At     time.Time `json:"at,omitzero"`
	Text   string    `json:"text"`
}

// Verdict is why's answer: in plain words, with the evidence and the fix.
type Verdict struct {
	DeviceID    string     `json:"deviceId"`
	Thing       string     `json:"thingName"`
	Case        string     `json:"case"`
	Summary     string     `json:"summary"`
	Since       time.Time  `json:"since,omitzero"`
	Certificate string     `json:"certificateId,omitempty"`
	Reason      string     `json:"reason,omitempty"` // the JITR refusal reason, AWS IoT's disconnect reason
	Fix         string     `json:"fix"`
	Evidence    []Evidence `json:"evidence"`
	// Notes say what why could not read (no AWS IoT logging, no index) and so could not rule out.
	Notes []string `json:"notes,omitempty"`
}

func (v *Verdict) add(source string, at time.Time, format string, args ...any) {
	v.Evidence = append(v.Evidence, Evidence{Source: source, At: at, Text: fmt.Sprintf(format, args...)})
}

// iotLogEntry is an AWS IoT v2 log entry ("CloudWatch Logs AWS IoT log entries").
type iotLogEntry struct {
	Timestamp        string `json:"timestamp"`
	LogLevel         string `json:"logLevel"`
	Status           string `json:"status"`
	EventType        string `json:"eventType"`
	TopicName        string `json:"topicName"`
	ClientID         string `json:"clientId"`
	PrincipalID      string `json:"principalId"`
	SourceIP         string `json:"sourceIp"`
	SourcePort       int    `json:"sourcePort"`
	DisconnectReason string `json:"disconnectReason"`
	Reason           string `json:"reason"`
	Details          string `json:"details"`
	at               time.Time
}

// functionLine is a line the stack's functions logged (log/slog JSON: internal/jitr's keys).
type functionLine struct {
	Level         string `json:"level"`
	Msg           string `json:"msg"`
	CertificateID string `json:"certificateId"`
	ThingName     string `json:"thingName"`
	Step          string `json:"step"`
	Outcome       string `json:"outcome"`
	Reason        string `json:"reason"`
	Error         string `json:"error"`
	group         string
	at            time.Time
}

// diagnosis is what Why gathered.
type diagnosis struct {
	thingExists  bool
	connectivity *Connectivity
	certs        map[string]*Certificate // every certificate the device is known to have presented or hold
	attached     []string
	denied       *DenyEntry
	iotLogs      []iotLogEntry // the client id's, oldest first
	iotLogsRead  bool
	lines        map[string][]functionLine // certificate id (or "thing") → function lines, oldest first
	deadLetters  map[string]string         // certificate id → the dead-letter message holding its event
	backlog      int
	backlogRead  bool
}

// Why tells why the device is or is not connected: it reads the registry (thing, certificates), the fleet index
// (connectivity), the deny-list, AWS IoT's v2 logs (connection attempts, refusals, disconnects), the stack's
// functions' logs (what the JITR function did with each certificate), the registration queue's backlog and the
// dead-letter queue (peeked at: nothing is taken out), and returns the verdict with its evidence and the fix.
func (f *Fleet) Why(ctx context.Context, deviceID string) (*Verdict, error) {
	thing, err := thingName(deviceID)
	if err != nil {
		// Not a device ID: still look for what was logged under it (a client id need not be one).
		thing = strings.ToLower(strings.TrimSpace(deviceID))
	}
	v := &Verdict{DeviceID: deviceID, Thing: thing}
	if err != nil {
		v.Notes = append(v.Notes, fmt.Sprintf("%q is not an Azure Sphere device ID (%v): no thing can have this name", deviceID, err))
	}
	d, err := f.gather(ctx, v, thing)
	if err != nil {
		return nil, err
	}
	f.decide(v, d)
	// Evidence without a time first (what is, now), then what happened, oldest first.
	sort.SliceStable(v.Evidence, func(i, j int) bool { return v.Evidence[i].At.Before(v.Evidence[j].At) })
	return v, nil
}

func (f *Fleet) gather(ctx context.Context, v *Verdict, thing string) (*diagnosis, error) {
	d := &diagnosis{certs: map[string]*Certificate{}, lines: map[string][]functionLine{}, deadLetters: map[string]string{}}
	out, err := f.iot.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(thing)})
	switch {
	case iotapi.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("describe thing %s: %w", thing, err)
	default:
		d.thingExists = true
		v.add("registry", time.Time{}, "thing %s exists (provisioned at %s)", thing, orNone(out.Attributes[contract.AttrProvisionedAt]))
		if f.index == nil {
			v.Notes = append(v.Notes, "no fleet index client: connectivity not read")
		} else if d.connectivity, err = f.connectivity(ctx, thing); err != nil {
			return nil, err
		}
		attached, err := f.attached(ctx, thing)
		if err != nil {
			return nil, err
		}
		for _, c := range attached {
			c := c
			d.certs[c.ID] = &c
			d.attached = append(d.attached, c.ID)
		}
	}
	if d.denied, err = f.denyEntry(ctx, thing); err != nil {
		return nil, err
	}
	if err := f.readIoTLogs(ctx, v, d, thing); err != nil {
		return nil, err
	}
	for _, e := range d.iotLogs {
		if e.PrincipalID != "" && d.certs[e.PrincipalID] == nil {
			d.certs[e.PrincipalID] = &Certificate{ID: e.PrincipalID}
		}
	}
	if err := f.readFunctionLogs(ctx, d, "thing", thing); err != nil {
		return nil, err
	}
	for _, l := range d.lines["thing"] {
		if l.CertificateID != "" && d.certs[l.CertificateID] == nil {
			d.certs[l.CertificateID] = &Certificate{ID: l.CertificateID}
		}
	}
	for id, c := range d.certs {
		desc, err := f.iot.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(id)})
		if iotapi.IsNotFound(err) {
			c.Status = "DELETED"
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe certificate %s: %w", id, err)
		}
		cd := desc.CertificateDescription
		c.Status, c.CAID = string(cd.Status), aws.ToString(cd.CaCertificateId)
		if cd.CreationDate != nil {
			c.Registered = cd.CreationDate.UTC()
		}
		if err := f.readFunctionLogs(ctx, d, id, id); err != nil {
			return nil, err
		}
	}
	if err := f.peekDeadLetters(ctx, d); err != nil {
		return nil, err
	}
	if f.queues != nil && f.stack.RegistrationQueueURL != "" {
		if n, err := f.depth(ctx, f.stack.RegistrationQueueURL); err == nil {
			d.backlog, d.backlogRead = n, true
		}
	}
	return d, nil
}

// readIoTLogs reads AWS IoT's v2 log entries of the client id (FilterLogEvents on AWSIotLogsV2, the id as a quoted
// term, then the entries whose clientId is it).
func (f *Fleet) readIoTLogs(ctx context.Context, v *Verdict, d *diagnosis, clientID string) error {
	if f.logs == nil {
		v.Notes = append(v.Notes, "no CloudWatch Logs client: AWS IoT's logs not read")
		return nil
	}
	var entries []iotLogEntry
	err := f.filter(ctx, IoTLogGroup, clientID, func(at time.Time, msg string) {
		var e iotLogEntry
		if json.Unmarshal([]byte(msg), &e) != nil || e.ClientID != clientID {
			return
		}
		e.at = at
		entries = append(entries, e)
	})
	var nf *logtypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		v.Notes = append(v.Notes, "AWS IoT logging is off in this account and Region (no "+IoTLogGroup+" log group): connection attempts, refusals "+
			"and disconnects are not on record; deploy with -c iotLogging=INFO to have them")
		return nil
	}
	if err != nil {
		return err
	}
	d.iotLogsRead = true
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].at.Before(entries[j].at) })
	d.iotLogs = entries
	return nil
}

// readFunctionLogs reads the stack's functions' lines that name term (a thing name or a certificate id) into
// d.lines[key].
func (f *Fleet) readFunctionLogs(ctx context.Context, d *diagnosis, key, term string) error {
	for _, group := range f.logGroups {
		err := f.filter(ctx, group, term, func(at time.Time, msg string) {
			var l functionLine
			if json.Unmarshal([]byte(msg), &l) != nil || l.Msg == "" {
				return
			}
			if l.CertificateID != term && l.ThingName != term {
				return
			}
			l.group, l.at = group, at
			d.lines[key] = append(d.lines[key], l)
		})
		var nf *logtypes.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) {
			return err
		}
	}
	sort.SliceStable(d.lines[key], func(i, j int) bool { return d.lines[key][i].at.Before(d.lines[key][j].at) })
	return nil
}

// filter pages through FilterLogEvents of a group for a quoted term over WhyLookback.
func (f *Fleet) filter(ctx context.Context, group, term string, each func(time.Time, string)) error {
	in := &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(`"` + term + `"`),
		StartTime: aws.Int64(f.now().Add(-WhyLookback).UnixMilli())}
	for page := 0; page < 20; page++ {
		out, err := f.logs.FilterLogEvents(ctx, in)
		if err != nil {
			return fmt.Errorf("read log group %s: %w", group, err)
		}
		for _, e := range out.Events {
			each(time.UnixMilli(aws.ToInt64(e.Timestamp)).UTC(), aws.ToString(e.Message))
		}
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		in.NextToken = out.NextToken
	}
	return nil
}

// peekDeadLetters looks for the device's certificates in the dead-letter queue and takes nothing out of it: it
// receives up to deadLetterPeeks batches, each hidden for peekVisibility so the next receive returns other
// messages, then makes every message it saw visible again at once (ChangeMessageVisibility 0). ReceiveMessage with
// VisibilityTimeout 0 would be simpler, but the AWS SDK for Go v2 does not send a zero VisibilityTimeout (the field
// is not a pointer), so the queue's own timeout would hide the messages instead.
func (f *Fleet) peekDeadLetters(ctx context.Context, d *diagnosis) (err error) {
	if f.peek == nil || f.stack.DeadLetterQueueURL == "" || len(d.certs) == 0 {
		return nil
	}
	queue := aws.String(f.stack.DeadLetterQueueURL)
	var handles []string
	defer func() {
		for _, h := range handles {
			if _, e := f.peek.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{QueueUrl: queue,
				ReceiptHandle: aws.String(h), VisibilityTimeout: 0}); e != nil && err == nil {
				err = fmt.Errorf("make a peeked dead letter visible again: %w", e)
			}
		}
	}()
	for i := 0; i < deadLetterPeeks; i++ {
		out, err := f.peek.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue, MaxNumberOfMessages: 10, VisibilityTimeout: peekVisibility})
		if err != nil {
			return fmt.Errorf("peek into the dead-letter queue: %w", err)
		}
		if len(out.Messages) == 0 {
			return nil
		}
		for _, m := range out.Messages {
			handles = append(handles, aws.ToString(m.ReceiptHandle))
			body := aws.ToString(m.Body)
			for id := range d.certs {
				if strings.Contains(body, id) {
					d.deadLetters[id] = body
				}
			}
		}
	}
	return nil
}

// decide picks the verdict from what was gathered, the most telling first.
func (f *Fleet) decide(v *Verdict, d *diagnosis) {
	ids := f.addEvidence(v, d)

	if c := d.connectivity; c != nil && c.Connected {
		v.Case, v.Since = WhyConnected, c.Since
		v.Summary = fmt.Sprintf("The device is connected (since %s).", stamp(c.Since))
		v.Fix = "Nothing to fix."
		if dup := lastDisconnect(d.iotLogs, "DUPLICATE_CLIENTID"); dup != nil && dup.at.After(f.now().Add(-time.Hour)) {
			v.Case, v.Reason = WhyDuplicateID, "DUPLICATE_CLIENTID"
			v.Summary = fmt.Sprintf("The device is connected now, but at %s another connection with the same client id took over the one from %s:%d "+
				"(DUPLICATE_CLIENTID): two clients use this client id and knock each other off.", stamp(dup.at), dup.SourceIP, dup.SourcePort)
			v.Fix = "Find the second client using this client id (the source addresses in " + IoTLogGroup + "): a cloned device image, a test tool, " +
				"or a device reconnecting before its old connection timed out. Each client must use its own id (the device id)."
		}
		return
	}
	if d.denied != nil {
		at, _ := time.Parse(time.RFC3339, d.denied.RevokedAt)
		v.Case, v.Since, v.Reason = WhyDenied, at, d.denied.Reason
		v.add("deny-list", at, "on the deny-list since %s by %s: %s", orNone(d.denied.RevokedAt), orNone(d.denied.RevokedBy), orNone(d.denied.Reason))
		v.Summary = fmt.Sprintf("The device is on the deny-list (since %s, reason %q): 'fleetctl revoke' revoked its certificates and the JITR function revokes every new one it presents.",
			orNone(d.denied.RevokedAt), d.denied.Reason)
		v.Fix = "If the device may come back: 'fleetctl allow " + v.Thing + "'; its next boot is provisioned."
		return
	}
	var newest *Certificate
	if len(ids) > 0 {
		newest = d.certs[ids[0]]
	}
	for _, id := range ids {
		if d.certs[id].Status == string(types.CertificateStatusActive) {
			f.decideProvisioned(v, d, d.certs[id])
			return
		}
	}
	if newest == nil {
		v.Case = WhyNeverSeen
		v.Summary = "AWS IoT has no record of this device: no thing, no certificate, no connection attempt"
		if !d.iotLogsRead {
			v.Summary += " (connection attempts are not logged: AWS IoT logging is off)"
		}
		v.Summary += "."
		v.Fix = "Check that the device is powered, online and claimed by the tenant whose CA the stack registered (az sphere device show-attached), " +
			"that its image has this stack's endpoint (make device-image), and that its id is right ('az sphere device show-attached' prints it)."
		return
	}
	v.Certificate = newest.ID
	v.Since = newest.Registered
	switch newest.Status {
	case string(types.CertificateStatusPendingActivation):
		f.decidePending(v, d, newest)
	case string(types.CertificateStatusRevoked):
		decideRevoked(v, d, newest)
	case string(types.CertificateStatusInactive), "DELETED":
		v.Case = WhyInactive
		v.Summary = fmt.Sprintf("The device's newest certificate %s is %s: it was retired when a newer certificate was activated, yet the device still presents it.", short(newest.ID), newest.Status)
		v.Fix = "Reboot the device (Azure Sphere issues a new certificate at each boot and at least every 24 h); JITR provisions the new one."
	default:
		v.Case = WhyRevoked
		v.Summary = fmt.Sprintf("The device's certificate %s is %s.", short(newest.ID), newest.Status)
		v.Fix = "Reboot the device so that it presents a new certificate."
	}
}

// addEvidence adds to v what the sources say, oldest last: the fleet index's connectivity, AWS IoT's log entries of
// the client id, and each certificate of the device with the function's log lines about it. It returns the
// certificate ids, newest registration first.
func (f *Fleet) addEvidence(v *Verdict, d *diagnosis) []string {
	if !d.iotLogsRead && f.logs != nil && !slices.ContainsFunc(v.Notes, func(n string) bool { return strings.Contains(n, "logging is off") }) {
		v.Notes = append(v.Notes, "no AWS IoT log entries read")
	}
	if c := d.connectivity; c != nil {
		if c.Connected {
			v.add("fleet index", c.Since, "connectivity.connected is true since %s", stamp(c.Since))
		} else if c.DisconnectReason != "" || !c.Since.IsZero() {
			v.add("fleet index", c.Since, "connectivity.connected is false since %s, disconnectReason %s", stamp(c.Since), orNone(c.DisconnectReason))
		}
	}
	shown := d.iotLogs
	if len(shown) > maxLogEvidence {
		v.add(IoTLogGroup, time.Time{}, "%d earlier entries of this client id not shown", len(shown)-maxLogEvidence)
		shown = shown[len(shown)-maxLogEvidence:]
	}
	for _, e := range shown {
		text := fmt.Sprintf("%s %s from %s:%d with certificate %s", e.EventType, e.Status, e.SourceIP, e.SourcePort, short(e.PrincipalID))
		if e.DisconnectReason != "" {
			text += ", disconnectReason " + e.DisconnectReason
		}
		if e.Reason != "" {
			text += ", " + e.Reason + ": " + e.Details
		}
		if e.TopicName != "" {
			text += ", topic " + e.TopicName
		}
		v.add(IoTLogGroup, e.at, "%s", text)
	}
	ids := make([]string, 0, len(d.certs))
	for id := range d.certs {
		ids = append(ids, id)
	}
	// Newest registration first: the device's latest boot is what matters.
	sort.Slice(ids, func(i, j int) bool { return d.certs[ids[i]].Registered.After(d.certs[ids[j]].Registered) })
	for _, id := range ids {
		c := d.certs[id]
		where := "presented in a connection attempt"
		if slices.Contains(d.attached, id) {
			where = "attached to the thing"
		}
		v.add("registry", c.Registered, "certificate %s is %s (registered %s, %s)", short(id), c.Status, stamp(c.Registered), where)
		for _, l := range d.lines[id] {
			v.add("log group "+l.group, l.at, "%s", l.describe())
		}
	}
	return ids
}

// decideRevoked explains a REVOKED newest certificate: refused by the JITR function (and why), revoked because the
// device is on the deny-list, or revoked by someone else.
func decideRevoked(v *Verdict, d *diagnosis, newest *Certificate) {
	refusal := lastOutcome(d.lines[newest.ID], "refused")
	denied := lastOutcome(d.lines[newest.ID], "denied")
	switch {
	case refusal != nil:
		v.Case, v.Reason, v.Since = WhyRefused, refusal.Reason, refusal.at
		v.Summary = fmt.Sprintf("The JITR function refused the device's certificate %s at %s and revoked it: %s.", short(newest.ID), stamp(refusal.at), refusal.Reason)
		v.Fix = refusalFix(refusal.Reason)
	case denied != nil:
		v.Case, v.Reason, v.Since = WhyDenied, denied.Reason, denied.at
		v.Summary = fmt.Sprintf("The JITR function revoked the device's certificate %s at %s: the device was on the deny-list.", short(newest.ID), stamp(denied.at))
		v.Fix = "'fleetctl allow " + v.Thing + "' if the device may come back; its next boot is provisioned."
	default:
		v.Case = WhyRevoked
		v.Summary = fmt.Sprintf("The device's certificate %s is REVOKED; AWS IoT refuses it.", short(newest.ID))
		v.Fix = "A revoked certificate never comes back. Reboot the device: Azure Sphere issues a new certificate, which JITR provisions (unless the device is on the deny-list)."
	}
}

// decidePending explains a PENDING_ACTIVATION certificate: how long, the queue's backlog, the function's errors for
// it, and whether its event is in the dead-letter queue.
func (f *Fleet) decidePending(v *Verdict, d *diagnosis, c *Certificate) {
	var errs []functionLine
	for _, l := range d.lines[c.ID] {
		if l.Error != "" || l.Level == "ERROR" || l.Level == "WARN" {
			errs = append(errs, l)
		}
	}
	if d.backlogRead {
		v.add("registration queue", time.Time{}, "%d registered event(s) waiting or in flight", d.backlog)
	}
	if body, ok := d.deadLetters[c.ID]; ok {
		v.Case = WhyDeadLettered
		v.add("dead-letter queue", time.Time{}, "holds the certificate's event (peeked, left in place): %s", clipText(body, 300))
		v.Summary = fmt.Sprintf("The device's certificate %s has been PENDING_ACTIVATION since %s and its registration gave up: the event is in the dead-letter queue.",
			short(c.ID), stamp(c.Registered))
		if len(errs) > 0 {
			last := errs[len(errs)-1]
			v.Reason = last.Error
			v.Summary += " The JITR function's last error for it: " + last.Error + "."
		}
		v.Fix = "Fix the cause of the function's errors (above; an AccessDenied is the function role's IAM grant), then redrive the dead-letter " +
			"queue into the registration queue (SQS console: \"Start DLQ redrive\", or aws sqs start-message-move-task --source-arn <dead-letter queue ARN>); " +
			"or reboot the device: its next connection publishes a new registered event."
		return
	}
	v.Case = WhyPending
	age := f.now().Sub(c.Registered).Round(time.Second)
	v.Summary = fmt.Sprintf("The device's certificate %s has been PENDING_ACTIVATION since %s (%s): the JITR function has not activated it.", short(c.ID), stamp(c.Registered), age)
	switch {
	case len(errs) > 0:
		last := errs[len(errs)-1]
		v.Reason = firstNonEmpty(last.Error, last.Reason)
		v.Summary += fmt.Sprintf(" The function failed on it %d time(s); last: %s.", len(errs), v.Reason)
		v.Fix = "Fix what the function's error says (an AccessDenied is the function role's IAM grant: redeploy the stack); the queue retries the event, " +
			"and each connection attempt of the device publishes it again."
	case d.backlogRead && d.backlog > 0:
		v.Summary += fmt.Sprintf(" %d registration(s) are queued ahead or in flight: a storm is being worked off within the AWS IoT quotas.", d.backlog)
		v.Fix = "Wait: the queue drains at the quota's pace (about 10 activations a second by default); the device retries with backoff."
	default:
		v.Summary += " The function logged nothing for it and the queue is empty."
		v.Fix = "Check the JITR function's errors and throttles (CloudWatch metrics) and the topic rule; the device's next connection attempt publishes the registered event again."
	}
}

// decideProvisioned explains a device with an ACTIVE certificate that is not connected.
func (f *Fleet) decideProvisioned(v *Verdict, d *diagnosis, c *Certificate) {
	v.Certificate = c.ID
	conn := d.connectivity
	last := lastDisconnect(d.iotLogs, "")
	reason, at := "", time.Time{}
	if conn != nil && !conn.Connected {
		reason, at = conn.DisconnectReason, conn.Since
	}
	if reason == "" && last != nil {
		reason, at = last.DisconnectReason, last.at
	}
	if lc := lastLifecycle(d.iotLogs); (conn == nil || conn.Since.IsZero()) && lc != nil && lc.EventType == "Connect" && lc.Status == "Success" {
		// No connectivity in the index (indexing off, or not yet): AWS IoT's log says the last connection is open.
		v.Case, v.Since = WhyConnected, lc.at
		v.Summary = fmt.Sprintf("The device is connected according to AWS IoT's log (connected at %s, no disconnect since); the fleet index has no connectivity for it.", stamp(lc.at))
		v.Fix = "Nothing to fix on the device. If the index should know it, check fleet indexing's connectivity mode (aws iot get-indexing-configuration)."
		return
	}
	if reason == "" && (conn == nil || conn.Since.IsZero()) && last == nil {
		v.Case, v.Since = WhyNotConnected, c.Registered
		v.Summary = fmt.Sprintf("The device is provisioned (certificate %s ACTIVE since %s) but has not connected since.", short(c.ID), stamp(c.Registered))
		v.Fix = "The device gave up or is offline: power-cycle it or check its network; its retries connect it."
		if refused := lastFailure(d.iotLogs, "Connect"); refused != nil && refused == lastLifecycle(d.iotLogs) {
			v.Summary += fmt.Sprintf(" Its last attempt at %s was refused: %s.", stamp(refused.at), refused.Details)
			v.Reason = refused.Details
		}
		return
	}
	v.Case, v.Since, v.Reason = WhyDisconnected, at, reason
	if reason == "" {
		reason = whyUnknownReason
	}
	text, fix := disconnectExplanation(reason)
	v.Summary = fmt.Sprintf("The device was connected and disconnected at %s: %s (%s).", stamp(at), text, reason)
	if denied := lastFailure(d.iotLogs, "Publish-In"); denied != nil && reason == "AUTH_ERROR" {
		v.Summary += fmt.Sprintf(" AWS IoT refused its publish to %s (%s).", denied.TopicName, denied.Reason)
	}
	if denied := lastFailure(d.iotLogs, "Subscribe"); denied != nil && reason == "AUTH_ERROR" {
		v.Summary += fmt.Sprintf(" AWS IoT refused its subscription to %s (%s).", denied.TopicName, denied.Reason)
	}
	v.Fix = fix
}

// disconnectExplanation says what AWS IoT's disconnect reason means and what to do.
func disconnectExplanation(reason string) (string, string) {
	switch reason {
	case "MQTT_KEEP_ALIVE_TIMEOUT":
		return "AWS IoT heard nothing from it for 1.5 × its keep-alive",
			"The device or its network went silent (power, Wi-Fi, a hung app): check it; the device reconnects when its network is back. A keep-alive below 30 s is raised to 30 s by AWS IoT."
	case "DUPLICATE_CLIENTID":
		return "another connection with the same client id took over",
			"Find the second client using this client id (source addresses in " + IoTLogGroup + "); each client must use its own id."
	case "AUTH_ERROR":
		return "AWS IoT refused it: its certificate stopped being ACTIVE, or it published or subscribed where its policy does not allow",
			"If a publish or subscribe was refused, the device app and the device policy disagree on topics: fix the app (device/) or the policy (stack). If the certificate was revoked, see 'fleetctl device'."
	case "FORBIDDEN_ACCESS":
		return "AWS IoT does not allow this client to connect",
			"Check the device policy's iot:Connect statement and the client id the device uses (its device id)."
	case "CLIENT_INITIATED_DISCONNECT":
		return "the device closed the connection itself", "Nothing on AWS's side: the device app disconnected (shutdown, update, app exit)."
	case "CONNECTION_LOST":
		return "the network connection dropped", "Check the device's network; it reconnects with backoff."
	case "CLIENT_ERROR":
		return "the device broke an MQTT rule (QoS 2, payload over 128 KB, topic too deep, ...)", "Fix the device app: the MQTT limits are in AWS IoT's quotas page."
	case "THROTTLED":
		return "the device exceeded an AWS IoT throughput limit", "Slow the device's publishes down."
	case "SERVER_INITIATED_DISCONNECT", "SERVER_ERROR":
		return "AWS IoT closed the connection on its side", "Nothing to fix on the device: it reconnects."
	case "API_INITIATED_DISCONNECT":
		return "someone called DeleteConnection for it", "Check who (CloudTrail)."
	}
	return "no reason on record", "Check the device and its network."
}

func refusalFix(reason string) string {
	switch {
	case strings.Contains(reason, "CN"):
		return "The certificate's subject is not an Azure Sphere device's (CN must be the 128-hex device id): the device is not an Azure Sphere device of this tenant, or runs a wrong image. Nothing to allow."
	case strings.Contains(reason, "not signed by CA"):
		return "The certificate was not issued by the stack's tenant CA: the device is claimed by another tenant, or the CA was renewed and the stack has not registered the new one (fleetctl cas)."
	case strings.Contains(reason, "expired"):
		return "The certificate had expired when the function read it: check the device's clock and reboot it (a new certificate is issued)."
	case strings.Contains(reason, "key"):
		return "The certificate's key is not the ECDSA P-256 (or stronger) Azure Sphere issues: it did not come from an Azure Sphere device."
	}
	return "Fix what the refusal says; then reboot the device so that it presents a new certificate."
}

func (l functionLine) describe() string {
	parts := []string{l.Level, l.Msg}
	if l.Step != "" {
		parts = append(parts, "step "+l.Step)
	}
	if l.Outcome != "" {
		parts = append(parts, "outcome "+l.Outcome)
	}
	if l.Reason != "" {
		parts = append(parts, "reason: "+l.Reason)
	}
	if l.Error != "" {
		parts = append(parts, "error: "+l.Error)
	}
	return strings.Join(parts, ", ")
}

func lastOutcome(lines []functionLine, outcome string) *functionLine {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i].Outcome == outcome {
			return &lines[i]
		}
	}
	return nil
}

func lastDisconnect(entries []iotLogEntry, reason string) *iotLogEntry {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].EventType == "Disconnect" && (reason == "" || entries[i].DisconnectReason == reason) {
			return &entries[i]
		}
	}
	return nil
}

// lastLifecycle is the client id's latest Connect or Disconnect entry.
func lastLifecycle(entries []iotLogEntry) *iotLogEntry {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].EventType == "Connect" || entries[i].EventType == "Disconnect" {
			return &entries[i]
		}
	}
	return nil
}

func lastFailure(entries []iotLogEntry, eventType string) *iotLogEntry {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].EventType == eventType && entries[i].Status == "Failure" {
			return &entries[i]
		}
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
