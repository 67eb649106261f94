package collect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/kithcdp/kith"
)

// ErrOverloaded is returned by Submit when the commit queue is full; the
// HTTP layer answers 429 with Retry-After.
var ErrOverloaded = kith.Errorf(kith.EOVERLOADED, "ingest queue is full; retry shortly")

// Appender is the part of the event log the committer needs.
type Appender interface {
	Append(ctx context.Context, b kith.AppendBatch) (kith.AppendResult, error)
}

// Submission is one request's contribution to a group commit.
type Submission struct {
	SourceID string
	Messages []kith.Message
	// Rejected counts this request's rejections by reason.
	Rejected map[string]int64

	// suppressed counts the messages the gate dropped (set by Submit).
	suppressed int64
}

// Outcome tells a request what happened to its messages.
type Outcome struct {
	// Duplicate[i] is true when Messages[i] was a duplicate.
	Duplicate []bool
	// Suppressed[i] is true when Messages[i] was dropped by the gate (nil
	// when none was).
	Suppressed []bool
	Err        error
}

// Gate says whether a message must be dropped at ingest (it carries an
// identifier of an erased person who asked not to be tracked again).
type Gate func(m kith.Message) bool

type pending struct {
	sub  Submission
	done chan Outcome
}

// Committer batches concurrent submissions into group commits: one writer
// goroutine drains the queue and makes each drained set durable with a
// single Append (one fsync), then answers every request in it. Requests thus
// share the cost of durability instead of each paying for an fsync.
type Committer struct {
	log      Appender
	gate     atomic.Pointer[Gate]
	maxBatch int
	queue    chan pending
	notify   func([]kith.Message)

	wg       sync.WaitGroup
	closeMu  sync.RWMutex
	isClosed bool
}

// NewCommitter starts the writer. queueLen bounds the number of waiting
// requests (beyond it Submit fails with ErrOverloaded); maxBatch bounds the
// events per commit. notify, if set, is called after every commit that
// stored events, with the stored events in log order and their Seq set when
// the store reports it (the indexer takes them from there instead of
// reading them back).
func NewCommitter(log Appender, queueLen, maxBatch int, notify func([]kith.Message)) *Committer {
	c := &Committer{log: log, maxBatch: maxBatch, queue: make(chan pending, queueLen), notify: notify}
	c.wg.Add(1)
	go c.run()
	return c
}

// SetGate installs the suppression gate (nil removes it). It runs in the
// submitting goroutine, before the group commit.
func (c *Committer) SetGate(g Gate) {
	if g == nil {
		c.gate.Store(nil)
		return
	}
	c.gate.Store(&g)
}

// Submit queues s for the next group commit and waits until it is durable.
// It fails fast with ErrOverloaded when the queue is full. Messages the
// gate drops are counted as suppressed, not stored.
func (c *Committer) Submit(ctx context.Context, s Submission) Outcome {
	if err := s.check(); err != nil {
		return Outcome{Err: err}
	}
	var suppressed []bool
	if g := c.gate.Load(); g != nil && len(s.Messages) > 0 {
		keep := make([]kith.Message, 0, len(s.Messages))
		n := int64(0)
		for i, m := range s.Messages {
			if (*g)(m) {
				if suppressed == nil {
					suppressed = make([]bool, len(s.Messages))
				}
				suppressed[i] = true
				n++
				continue
			}
			keep = append(keep, m)
		}
		if n > 0 {
			s.Messages, s.suppressed = keep, n
		}
	}
	out := c.submit(ctx, s)
	if suppressed == nil || out.Err != nil {
		return out
	}
	// Report in the caller's positions.
	full := make([]bool, len(suppressed))
	k := 0
	for i := range full {
		if !suppressed[i] {
			full[i] = out.Duplicate[k]
			k++
		}
	}
	out.Duplicate, out.Suppressed = full, suppressed
	return out
}

// MaxReportedRejections bounds one submission's count of rejections for
// one reason: more than any request can carry, and far from overflowing
// the counters that add them up.
const MaxReportedRejections = 1 << 31

// check refuses a submission the log could not store, so that it fails
// alone instead of failing the group commit it would join: rejection
// reasons in text every store can hold (kith.TextProblem) and counts that
// can be added. The messages themselves were checked once, where they were
// made: Parse for collection and imports, the consent API for its own.
func (s Submission) check() error {
	if err := kith.CheckText("source id", s.SourceID); err != nil {
		return err
	}
	for reason, n := range s.Rejected {
		if err := kith.CheckText("rejection reason", reason); err != nil {
			return err
		}
		if reason == "" || len(reason) > 100 {
			return kith.Errorf(kith.EINVALID, "a rejection reason must be 1 to 100 bytes, not %d", len(reason))
		}
		if n < 0 || n > MaxReportedRejections {
			return kith.Errorf(kith.EINVALID, "rejections for reason %q: %d is not a count between 0 and %d", reason, n, int64(MaxReportedRejections))
		}
	}
	return nil
}

func (c *Committer) submit(ctx context.Context, s Submission) Outcome {
	c.closeMu.RLock()
	if c.isClosed {
		c.closeMu.RUnlock()
		return Outcome{Err: kith.Errorf(kith.EOVERLOADED, "server is shutting down")}
	}
	p := pending{sub: s, done: make(chan Outcome, 1)}
	select {
	case c.queue <- p:
	default:
		c.closeMu.RUnlock()
		return Outcome{Err: ErrOverloaded}
	}
	c.closeMu.RUnlock()
	// The commit proceeds even if the client goes away: once queued, the
	// events are stored and counted, and the answer is simply not read.
	return <-p.done
}

// Close stops accepting submissions, commits what is queued and waits.
func (c *Committer) Close() {
	c.closeMu.Lock()
	if !c.isClosed {
		c.isClosed = true
		close(c.queue)
	}
	c.closeMu.Unlock()
	c.wg.Wait()
}

func (c *Committer) run() {
	defer c.wg.Done()
	for first := range c.queue {
		group := []pending{first}
		n := len(first.sub.Messages)
	drain:
		for n < c.maxBatch {
			select {
			case p, ok := <-c.queue:
				if !ok {
					break drain
				}
				group = append(group, p)
				n += len(p.sub.Messages)
			default:
				break drain
			}
		}
		c.commit(group, n)
	}
}

// commit appends a group. When the store refuses the group's data
// (EINVALID: a value it cannot hold that check did not foresee), each
// submission is committed on its own, so only the one that carries it
// fails and every other request in the group is stored.
func (c *Committer) commit(group []pending, n int) {
	res, b, err := c.append(group, n)
	if len(group) > 1 && kith.ErrorCode(err) == kith.EINVALID {
		for _, p := range group {
			c.commit([]pending{p}, len(p.sub.Messages))
		}
		return
	}
	c.answer(group, n, b, res, err)
}

// append makes a group durable with one Append.
func (c *Committer) append(group []pending, n int) (kith.AppendResult, kith.AppendBatch, error) {
	b := kith.AppendBatch{Events: make([]kith.Message, 0, n), Rejected: map[string]map[string]int64{}}
	for _, p := range group {
		b.Events = append(b.Events, p.sub.Messages...)
		if p.sub.suppressed > 0 {
			if b.Suppressed == nil {
				b.Suppressed = map[string]int64{}
			}
			b.Suppressed[p.sub.SourceID] += p.sub.suppressed
		}
		for reason, k := range p.sub.Rejected {
			if b.Rejected[p.sub.SourceID] == nil {
				b.Rejected[p.sub.SourceID] = map[string]int64{}
			}
			b.Rejected[p.sub.SourceID][reason] += k
		}
	}
	res, err := c.log.Append(context.Background(), b)
	if err == nil && len(res.Duplicate) != len(b.Events) {
		err = errors.New("store returned a result of the wrong length")
	}
	if err != nil {
		err = fmt.Errorf("collect: group commit of %d events: %w", n, err)
	}
	return res, b, err
}

// answer tells every request of a group what happened and hands the stored
// events to notify.
func (c *Committer) answer(group []pending, n int, b kith.AppendBatch, res kith.AppendResult, err error) {
	off := 0
	for _, p := range group {
		k := len(p.sub.Messages)
		o := Outcome{Err: err}
		if err == nil {
			o.Duplicate = res.Duplicate[off : off+k]
		}
		off += k
		p.done <- o
	}
	if err == nil && n > 0 && c.notify != nil {
		var stored []kith.Message
		if len(res.Seqs) == len(b.Events) {
			stored = make([]kith.Message, 0, len(b.Events))
			for i, e := range b.Events {
				if !res.Duplicate[i] {
					e.Seq = res.Seqs[i]
					stored = append(stored, e)
				}
			}
		}
		c.notify(stored)
	}
}
