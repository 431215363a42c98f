// Package cwlogs writes log lines into moto's CloudWatch Logs the way AWS's services write theirs: a Lambda
// function's output into its log group, AWS IoT's v2 log entries into AWSIotLogsV2. Lines are queued and sent in
// batches (PutLogEvents) by one goroutine, so that whoever logs — a broker admitting a storm of connections, a
// function printing a line — never waits for moto.
package cwlogs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

// API is the part of CloudWatch Logs the shipper calls.
type API interface {
	CreateLogGroup(ctx context.Context, in *cloudwatchlogs.CreateLogGroupInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogGroupOutput, error)
	CreateLogStream(ctx context.Context, in *cloudwatchlogs.CreateLogStreamInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error)
	PutLogEvents(ctx context.Context, in *cloudwatchlogs.PutLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error)
}

var _ API = (*cloudwatchlogs.Client)(nil)

// QueueSize bounds the lines waiting to be sent; beyond it lines are dropped and counted (Dropped), never waited for.
const QueueSize = 1 << 16

// maxBatch is PutLogEvents' limit of events per call.
const maxBatch = 10000

// flushEvery is how long a line waits at most before it is sent.
const flushEvery = 100 * time.Millisecond

type line struct {
	group, stream string
	at            time.Time
	text          string
}

// Shipper sends lines to CloudWatch Logs in the background.
type Shipper struct {
	api     API
	q       chan line
	flushed chan chan struct{}
	done    chan struct{}
	stop    sync.Once
	dropped atomic.Int64
	failed  atomic.Int64
	made    map[string]bool // group, and group + "\x00" + stream, created (the shipper goroutine's own)
}

// New starts a shipper on api.
func New(api API) *Shipper {
	s := &Shipper{api: api, q: make(chan line, QueueSize), flushed: make(chan chan struct{}), done: make(chan struct{}), made: map[string]bool{}}
	go s.run()
	return s
}

// Put queues one line for the stream of the group (both created on first use); it never blocks.
func (s *Shipper) Put(group, stream string, at time.Time, text string) {
	text = strings.TrimRight(text, "\r\n")
	if text == "" {
		return
	}
	select {
	case s.q <- line{group: group, stream: stream, at: at, text: text}:
	default:
		s.dropped.Add(1)
	}
}

// Dropped counts the lines the full queue refused; Failed the lines CloudWatch Logs refused.
func (s *Shipper) Dropped() int64 { return s.dropped.Load() }

// Failed counts the lines that could not be sent.
func (s *Shipper) Failed() int64 { return s.failed.Load() }

// Flush waits until every line queued before the call has been sent (or failed).
func (s *Shipper) Flush() {
	ack := make(chan struct{})
	select {
	case s.flushed <- ack:
		<-ack
	case <-s.done:
	}
}

// Close sends what is queued and stops.
func (s *Shipper) Close() {
	s.stop.Do(func() {
		s.Flush()
		close(s.done)
	})
}

func (s *Shipper) run() {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var batch []line
	for {
		select {
		case l := <-s.q:
			batch = append(batch, l)
			if len(batch) >= maxBatch {
				s.send(batch)
				batch = nil
			}
		case <-t.C:
			if len(batch) > 0 {
				s.send(batch)
				batch = nil
			}
		case ack := <-s.flushed:
			for drained := false; !drained; {
				select {
				case l := <-s.q:
					batch = append(batch, l)
				default:
					drained = true
				}
			}
			s.send(batch)
			batch = nil
			close(ack)
		case <-s.done:
			return
		}
	}
}

// send puts the lines, grouped by stream, in time order (PutLogEvents wants them sorted).
func (s *Shipper) send(batch []line) {
	type key struct{ group, stream string }
	by := map[key][]types.InputLogEvent{}
	var order []key
	for _, l := range batch {
		k := key{l.group, l.stream}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], types.InputLogEvent{Timestamp: aws.Int64(l.at.UnixMilli()), Message: aws.String(l.text)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range order {
		events := by[k]
		if err := s.ensure(ctx, k.group, k.stream); err != nil {
			s.failed.Add(int64(len(events)))
			continue
		}
		// Stable: lines of the same millisecond keep the order they were written in.
		sortByTime(events)
		if _, err := s.api.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(k.group),
			LogStreamName: aws.String(k.stream), LogEvents: events}); err != nil {
			s.failed.Add(int64(len(events)))
		}
	}
}

func sortByTime(events []types.InputLogEvent) {
	slices.SortStableFunc(events, func(a, b types.InputLogEvent) int { return cmp.Compare(*a.Timestamp, *b.Timestamp) })
}

// ensure creates the group and the stream the first time they are used (an existing one is fine).
func (s *Shipper) ensure(ctx context.Context, group, stream string) error {
	var exists *types.ResourceAlreadyExistsException
	if !s.made[group] {
		if _, err := s.api.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)}); err != nil && !errors.As(err, &exists) {
			return err
		}
		s.made[group] = true
	}
	if k := group + "\x00" + stream; !s.made[k] {
		if _, err := s.api.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)}); err != nil && !errors.As(err, &exists) {
			return err
		}
		s.made[k] = true
	}
	return nil
}

// Writer is an io.Writer that ships each line written to it to one stream of a group, as Lambda ships a function's
// output (a line per event, the time it was written).
type Writer struct {
	s             *Shipper
	group, stream string
	mu            sync.Mutex
	partial       []byte
}

// Writer returns a writer of the group's stream.
func (s *Shipper) Writer(group, stream string) *Writer {
	return &Writer{s: s, group: group, stream: stream}
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	now := time.Now()
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.s.Put(w.group, w.stream, now, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}
