package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// downAuditStore is an audit store whose database is down: every append
// fails (after honouring its context, as a database driver does).
type downAuditStore struct {
	kith.AuditStore
	calls atomic.Int64
}

func (s *downAuditStore) AppendAudit(ctx context.Context, _ []kith.AuditEntry) error {
	s.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("connection refused")
}

// A shutdown while the audit store is down and the queue is full, with
// requests waiting for room in it, ends within the grace period: the
// waiting requests stop waiting, and the writer stops retrying.
func TestAuditorShutdownWhileStoreDown(t *testing.T) {
	store := &downAuditStore{}
	a := newAuditor(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.grace = 300 * time.Millisecond
	// More requests than the writer's batch and the queue hold: some wait.
	var waiting sync.WaitGroup
	var added atomic.Int64
	for range cap(a.ch) + 1500 {
		waiting.Go(func() {
			a.add(kith.AuditEntry{Action: "GET /v1/profiles/{ref}"})
			added.Add(1)
		})
	}
	waiting.Go(a.sync)
	for deadline := time.Now().Add(5 * time.Second); len(a.ch) < cap(a.ch); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not fill: %d of %d", len(a.ch), cap(a.ch))
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := added.Load(); n >= int64(cap(a.ch)+2000) {
		t.Fatalf("no request is waiting for room in the queue (%d added)", n)
	}
	if h := a.status.Health(); h.Failing == 0 {
		t.Fatalf("the failing store does not show in the health: %+v", h)
	}
	closed := make(chan struct{})
	start := time.Now()
	go func() {
		a.close()
		waiting.Wait()
		close(closed)
	}()
	select {
	case <-closed:
		if d := time.Since(start); d < a.grace {
			t.Errorf("closed after %v, before the grace period of %v", d, a.grace)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return: the shutdown hangs while the audit store is down")
	}
}
