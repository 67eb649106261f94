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
// the store keeps failing (shutdownGrace after it began, so the process
// can exit).
type auditor struct {
	store  kith.AuditStore
	log    *slog.Logger
	ch     chan auditMsg
	done   chan struct{}
	status kith.WorkerStatus

	// quit is closed when the shutdown begins: requests stop waiting for
	// room in the queue. expired is closed shutdownGrace later: the writer
	// stops retrying, and ctx, which every store call takes, is cancelled.
	quit, expired chan struct{}
	quitOnce      sync.Once
	ctx           context.Context
	grace         time.Duration // shutdownGrace

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
	a := &auditor{store: store, log: log, ch: make(chan auditMsg, 4096), done: make(chan struct{}),
		quit: make(chan struct{}), expired: make(chan struct{}), grace: shutdownGrace}
	a.status.Name = "audit"
	ctx, cancel := context.WithCancel(context.Background())
	a.ctx = ctx
	go func() {
		<-a.expired
		cancel()
	}()
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
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := a.store.AppendAudit(a.ctx, batch)
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
		select {
		case <-time.After(wait):
			a.log.Error("audit log: append failed; retrying", "entries", len(batch), "err", err)
		case <-a.expired:
			a.log.Error("audit log: shutting down while the store fails; entries not written", "entries", len(batch)+len(a.ch), "err", err)
			for m := range a.ch { // closed by close once no request is sending
				if m.sync != nil {
					close(m.sync)
				}
			}
			return
		}
	}
}

// sync waits until every entry queued so far is stored (or, during a
// shutdown, until the writer gives up).
func (a *auditor) sync() {
	c := make(chan struct{})
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return
	}
	select {
	case a.ch <- auditMsg{sync: c}:
	case <-a.quit:
		a.mu.RUnlock()
		return
	}
	a.mu.RUnlock()
	select {
	case <-c:
	case <-a.expired:
	}
}

// add queues an entry; during or after the shutdown (a request that
// outlived it) it is written directly, within the grace period.
func (a *auditor) add(e kith.AuditEntry) {
	// Whatever a request presented, its entry must be storable: one entry
	// the store refuses would hold back every entry behind it.
	for _, f := range []*string{&e.TokenID, &e.TokenName, &e.Action, &e.Target, &e.Outcome} {
		*f = kith.QuoteText(*f)
	}
	a.mu.RLock()
	if !a.closed {
		select {
		case a.ch <- auditMsg{e: e}:
			a.mu.RUnlock()
			return
		case <-a.quit:
		}
	}
	a.mu.RUnlock()
	if err := a.store.AppendAudit(a.ctx, []kith.AuditEntry{e}); err != nil {
		a.log.Error("audit log: append failed during shutdown", "err", err)
	}
}

// close stops the queue and waits for the writer: until the entries are
// stored, or shutdownGrace if the store keeps failing. Requests waiting
// for room in the queue stop waiting at once, so that close never waits
// for them.
func (a *auditor) close() {
	a.quitOnce.Do(func() {
		close(a.quit)
		time.AfterFunc(a.grace, func() { close(a.expired) })
	})
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
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
