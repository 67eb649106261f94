package audience

import (
	"slices"
	"sync"
	"time"
)

// Status is what the engine reports about itself: how far it has applied
// the log and how long after their arrival events' effects on memberships
// were committed (over the last lagWindow events it applied in real time).
type Status struct {
	Cursor int64 `json:"cursor"`
	// LagP50/P99/Max are milliseconds from an event's arrival (its
	// receivedAt, just before its ack) to the commit of the memberships
	// it changed.
	LagP50  float64 `json:"lagP50Ms"`
	LagP99  float64 `json:"lagP99Ms"`
	LagMax  float64 `json:"lagMaxMs"`
	Samples int     `json:"lagSamples"`
	// IndexLagP50/P99 are the same measure up to the indexer's commit,
	// which the engine follows: the engine's own share is the difference.
	IndexLagP50 float64 `json:"indexLagP50Ms"`
	IndexLagP99 float64 `json:"indexLagP99Ms"`
	// Pending counts applied index batches the engine has not folded in
	// yet (-1 when it fell behind and reads the log).
	Pending int `json:"pending"`
	// Scheduled counts profiles with a scheduled time-based change.
	Scheduled int `json:"scheduledProfiles"`
}

const lagWindow = 1 << 16

// lags is a ring of the latest lags, in microseconds.
type lags struct {
	mu   sync.Mutex
	ring []int64
	next int
	// last is the latest summary and when it was computed: a summary
	// sorts the whole ring, so one is reused for lagSummaryAge rather
	// than recomputed for every poll of /v1/stats.
	last    lagSummary
	lastAt  time.Time
	lastLen int
}

type lagSummary struct {
	p50, p99, max float64
	n             int
}

// lagSummaryAge is how long a computed summary serves.
const lagSummaryAge = time.Second

func (l *lags) add(d time.Duration) {
	l.mu.Lock()
	if len(l.ring) < lagWindow {
		l.ring = append(l.ring, d.Microseconds())
	} else {
		l.ring[l.next] = d.Microseconds()
		l.next = (l.next + 1) % lagWindow
	}
	l.mu.Unlock()
}

func (l *lags) percentiles() (p50, p99, mx float64, n int) {
	l.mu.Lock()
	if len(l.ring) == l.lastLen && time.Since(l.lastAt) < lagSummaryAge {
		r := l.last
		l.mu.Unlock()
		return r.p50, r.p99, r.max, r.n
	}
	s := slices.Clone(l.ring)
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(s)
	at := func(q float64) float64 { return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / 1000 }
	r := lagSummary{p50: at(0.50), p99: at(0.99), max: float64(s[len(s)-1]) / 1000, n: len(s)}
	l.mu.Lock()
	l.last, l.lastAt, l.lastLen = r, time.Now(), len(s)
	l.mu.Unlock()
	return r.p50, r.p99, r.max, r.n
}

// Status reports the engine's progress and real-time lag.
func (e *Engine) Status() Status {
	p50, p99, mx, n := e.lag.percentiles()
	i50, i99, _, _ := e.indexLag.percentiles()
	e.mu.Lock()
	sched, pending := int(e.scheduled.Load()), len(e.queue)+e.busy
	if e.dropped {
		pending = -1
	}
	e.mu.Unlock()
	return Status{Cursor: e.cursor.Load(), LagP50: p50, LagP99: p99, LagMax: mx, Samples: n, Scheduled: sched, Pending: pending, IndexLagP50: i50, IndexLagP99: i99}
}
