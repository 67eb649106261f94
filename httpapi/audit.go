package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/privacy"
)

// auditor writes audit entries in batches on its own goroutine, so an
// admin request does not wait for the audit log's fsync and a burst of
// profile reads costs one commit. Entries are not dropped: when the queue
// is full, requests wait; a failing store is retried, and the failures
// show in /healthz and /metrics. Only two things give an entry up, each
// with an error log line: the store refusing that one entry's data (it is
// set aside so the entries behind it are written), and a shutdown while
// the store keeps failing (after shutdownGrace, so the process can exit).
type auditor struct {
	store  kith.AuditStore
	log    *slog.Logger
	ch     chan auditMsg
	done   chan struct{}
	quit   chan struct{} // closed at close: stop retrying after shutdownGrace
	status kith.WorkerStatus

	mu     sync.RWMutex // closed and sends on ch
	closed bool
}

// shutdownGrace is how long a closing auditor keeps retrying a failing
// store before it gives the remaining entries up.
const shutdownGrace = 10 * time.Second

// auditMsg is an entry, or (sync != nil) a request to be told once every
// entry queued before it is stored.
type auditMsg struct {
	e    kith.AuditEntry
	sync chan struct{}
}

func newAuditor(store kith.AuditStore, log *slog.Logger) *auditor {
	a := &auditor{store: store, log: log, ch: make(chan auditMsg, 4096), done: make(chan struct{}), quit: make(chan struct{})}
	a.status.Name = "audit"
	go a.run()
	return a
}

func (a *auditor) run() {
	defer close(a.done)
	for m := range a.ch {
		batch := []kith.AuditEntry{}
		var syncs []chan struct{}
		add := func(m auditMsg) {
			if m.sync != nil {
				syncs = append(syncs, m.sync)
			} else {
				batch = append(batch, m.e)
			}
		}
		add(m)
	drain:
		for len(batch) < 1000 {
			select {
			case m, ok := <-a.ch:
				if !ok {
					break drain
				}
				add(m)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			a.write(batch)
		}
		for _, c := range syncs {
			close(c)
		}
	}
}

// write stores a batch, retrying while the store fails. When the store
// refuses the batch's data, each entry is written on its own and an entry
// refused alone is set aside.
func (a *auditor) write(batch []kith.AuditEntry) {
	var giveUp <-chan time.Time
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := a.store.AppendAudit(context.Background(), batch)
		if err == nil {
			a.status.OK()
			return
		}
		if kith.ErrorCode(err) == kith.EINVALID {
			if len(batch) > 1 {
				for _, e := range batch {
					a.write([]kith.AuditEntry{e})
				}
				return
			}
			a.status.Skip(1)
			a.log.Error("audit log: the store refused an entry; set aside", "action", batch[0].Action, "token", batch[0].TokenID, "status", batch[0].Status, "err", err)
			return
		}
		a.status.Fail(err, time.Now())
		a.log.Error("audit log: append failed; retrying", "entries", len(batch), "err", err)
		if giveUp == nil {
			select {
			case <-a.quit:
				giveUp = time.After(shutdownGrace)
			default:
			}
		}
		select {
		case <-time.After(wait):
		case <-giveUp:
			a.log.Error("audit log: shutting down while the store fails; entries not written", "entries", len(batch)+len(a.ch), "err", err)
			for m := range a.ch {
				if m.sync != nil {
					close(m.sync)
				}
			}
			return
		}
	}
}

// sync waits until every entry queued so far is stored.
func (a *auditor) sync() {
	c := make(chan struct{})
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return
	}
	a.ch <- auditMsg{sync: c}
	a.mu.RUnlock()
	<-c
}

// add queues an entry; after close (a request that outlived the
// shutdown) it is written directly.
func (a *auditor) add(e kith.AuditEntry) {
	// Whatever a request presented, its entry must be storable: one entry
	// the store refuses would hold back every entry behind it.
	for _, f := range []*string{&e.TokenID, &e.TokenName, &e.Action, &e.Target, &e.Outcome} {
		*f = kith.QuoteText(*f)
	}
	a.mu.RLock()
	if !a.closed {
		a.ch <- auditMsg{e: e}
		a.mu.RUnlock()
		return
	}
	a.mu.RUnlock()
	if err := a.store.AppendAudit(context.Background(), []kith.AuditEntry{e}); err != nil {
		a.log.Error("audit log: append failed after shutdown", "err", err)
	}
}

func (a *auditor) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
		close(a.quit)
	}
	a.mu.Unlock()
	<-a.done
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var routeParam = regexp.MustCompile(`\{([a-z]+)\}`)

// auditNote lets a handler add to its request's audit target what is not
// in the path (an erasure's identifier, as a keyed hash, and its id).
type auditNote struct{ extra []string }

type auditNoteKey struct{}

// noteAudit adds kv to the audit target of r's request.
func noteAudit(r *http.Request, kv string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.extra = append(n.extra, kv)
	}
}

// audit queues the entry of one admin request. A profile reference that
// is an identifier ("email:ada@example.com") is recorded as its type and
// keyed hash, so the audit log holds no personal data.
func (s *Server) audit(r *http.Request, tok kith.Token, pattern string, status int) {
	var target []string
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		target = append(target, n.extra...)
	}
	for _, m := range routeParam.FindAllStringSubmatch(pattern, -1) {
		v := r.PathValue(m[1])
		if m[1] == "ref" {
			v = s.auditRef(r, v)
		}
		v = kith.QuoteText(v) // a refused request is audited with what it sent
		target = append(target, m[1]+"="+v)
	}
	s.auditor.add(kith.AuditEntry{At: s.cfg.Now().UTC(), TokenID: tok.ID, TokenName: tok.Name, Action: pattern,
		Target: strings.Join(target, " "), Status: status, Outcome: kith.AuditOutcome(status)})
}

// auditRef writes ref as the audit log holds it (privacy.AuditRef).
func (s *Server) auditRef(r *http.Request, ref string) string {
	keyer, err := s.keyer(r)
	if err != nil {
		return "?"
	}
	return privacy.AuditRef(s.rules.Load(), keyer, ref)
}

// handleAudit serves GET /v1/audit?after=&token=&action=&target=&limit=.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var after int64
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			s.error(w, r, kith.Errorf(kith.EINVALID, "after must be an audit seq"))
			return
		}
	}
	target := q.Get("target")
	if strings.HasPrefix(target, "ref=") {
		target = "ref=" + s.auditRef(r, strings.TrimPrefix(target, "ref="))
	}
	s.auditor.sync() // what this server has done so far is visible
	es, err := s.store.AuditLog(r.Context(), kith.AuditQuery{After: after, TokenID: q.Get("token"), Action: q.Get("action"), Target: target, Limit: limit})
	if err != nil {
		s.error(w, r, err)
		return
	}
	if es == nil {
		es = []kith.AuditEntry{}
	}
	next := ""
	if len(es) == limit {
		next = strconv.FormatInt(es[len(es)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": es, "cursor": cursor{HasMore: next != "", Next: next}})
}

// SyncAudit waits until every audit entry recorded so far is stored.
func (s *Server) SyncAudit() { s.auditor.sync() }

// Audit records an entry in the audit log, as for the API's own requests
// (the console records what is done through it).
func (s *Server) Audit(e kith.AuditEntry) { s.auditor.add(e) }
