package kith

import (
	"math"
	"sync"
	"time"
)

// A background worker (the indexer, the audit writer, the audience engine)
// that cannot make progress retries, but it must not do so silently: it
// reports each attempt to a WorkerStatus, and /healthz and /metrics show
// the workers that are failing.

// WorkerHealth is what a background worker reports about itself.
type WorkerHealth struct {
	// Worker names it ("indexer", "audit").
	Worker string `json:"worker"`
	// Failing counts the consecutive failed attempts; 0 once one succeeds.
	Failing int64 `json:"failing"`
	// Since is when the current run of failures began (zero when healthy).
	Since time.Time `json:"since,omitzero"`
	// Failures counts every failed attempt since the process started.
	Failures int64 `json:"failures"`
	// Skipped counts items the worker could not apply and set aside (with
	// a log line naming each), so that it could go on with the rest.
	Skipped int64 `json:"skipped"`
	// LastError is the latest failure's error (empty when healthy). It is
	// for operators: /healthz, which anyone may read, leaves it out.
	LastError string `json:"-"`
}

// Stuck reports whether the worker has failed often enough in a row to be
// reported as not making progress (a single transient failure is not).
func (h WorkerHealth) Stuck() bool { return h.Failing >= 3 }

// WorkerStatus keeps a worker's health; the worker reports each attempt.
// The zero value is ready to use once Name is set.
type WorkerStatus struct {
	Name string

	mu sync.Mutex
	h  WorkerHealth
}

// Fail records a failed attempt.
func (s *WorkerStatus) Fail(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.Failing == 0 {
		s.h.Since = now
	}
	s.h.Failing++
	s.h.Failures++
	if err != nil {
		s.h.LastError = err.Error()
	}
}

// OK records a successful attempt.
func (s *WorkerStatus) OK() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h.Failing, s.h.Since, s.h.LastError = 0, time.Time{}, ""
}

// Skip records n items set aside.
func (s *WorkerStatus) Skip(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h.Skipped += n
}

// Health returns the worker's current health.
func (s *WorkerStatus) Health() WorkerHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.h
	h.Worker = s.Name
	return h
}

// RebuildProgress is how far a rebuild of the derived state from the log
// has come: the log position applied and the log head when it began.
// Active is false when there was none or it has caught up.
type RebuildProgress struct {
	Position, Of int64
	Active       bool
}

// Percent is Position of Of in percent, rounded down to a tenth.
func (p RebuildProgress) Percent() float64 {
	if p.Of <= 0 {
		return 0
	}
	return math.Floor(float64(p.Position)/float64(p.Of)*1000) / 10
}
