package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/audience"
)

func (s *Server) handleCreateSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	src, key, err := admin.CreateSource(r.Context(), s.store, req.Name, s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.invalidateSources()
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": src.ID, "name": src.Name, "writeKey": key, "disabled": src.Disabled, "createdAt": src.CreatedAt,
	})
}

func (s *Server) handleListSources(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.Sources(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	if list == nil {
		list = []kith.Source{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": list})
}

func (s *Server) handleUpdateSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Disabled *bool `json:"disabled"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.Disabled == nil {
		s.error(w, r, kith.Errorf(kith.EINVALID, `body must set "disabled"`))
		return
	}
	id := r.PathValue("id")
	if err := s.store.SetSourceDisabled(r.Context(), id, *req.Disabled); err != nil {
		s.error(w, r, err)
		return
	}
	s.invalidateSources()
	list, err := s.store.Sources(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, src := range list {
		if src.ID == id {
			writeJSON(w, http.StatusOK, src)
			return
		}
	}
	s.error(w, r, kith.Errorf(kith.ENOTFOUND, "source %q not found", id))
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	tok, secret, err := admin.CreateToken(r.Context(), s.store, req.Name, req.Scopes, s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": tok.ID, "name": tok.Name, "scopes": tok.Scopes, "token": secret, "createdAt": tok.CreatedAt,
	})
}

// SourceStats is one source's accounting in GET /v1/stats.
type SourceStats struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	kith.Counts
}

// Stats is the body of GET /v1/stats.
type Stats struct {
	Sources []SourceStats `json:"sources"`
	Totals  kith.Counts   `json:"totals"`
	// Backlog is the number of accepted events not yet processed.
	Backlog int64 `json:"backlog"`
	// Refused counts whole requests refused before any message was read
	// (unauthorised, too large, overloaded), by reason.
	Refused map[string]int64 `json:"refused"`
	// Audiences is the audience engine's progress and real-time lag.
	Audiences *audience.Status `json:"audiences,omitempty"`
	// Outputs counts, per output (look_alike_seeds, …), the profiles
	// delivered and those filtered by consent since the server started.
	Outputs map[string]OutputStats `json:"outputs"`
	// Destinations is each destination's accounting, by name.
	Destinations []DestinationStats `json:"destinations"`
}

func (s *Server) stats(r *http.Request) (Stats, error) {
	counts, err := s.store.Counts(r.Context())
	if err != nil {
		return Stats{}, err
	}
	list, err := s.store.Sources(r.Context())
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Sources: []SourceStats{}, Totals: kith.Counts{Rejected: map[string]int64{}}, Backlog: s.indexer.Backlog(), Refused: map[string]int64{}, Outputs: s.outputs.snapshot()}
	if s.cfg.Audiences != nil {
		a := s.cfg.Audiences.Status()
		st.Audiences = &a
	}
	names := map[string]string{}
	for _, src := range list {
		names[src.ID] = src.Name
		if _, ok := counts[src.ID]; !ok {
			counts[src.ID] = kith.Counts{Rejected: map[string]int64{}}
		}
	}
	for id, c := range counts {
		if c.Rejected == nil {
			c.Rejected = map[string]int64{}
		}
		st.Sources = append(st.Sources, SourceStats{ID: id, Name: names[id], Counts: c})
		st.Totals.Add(c)
	}
	sort.Slice(st.Sources, func(i, j int) bool { return st.Sources[i].ID < st.Sources[j].ID })
	if st.Destinations, err = s.destinationStats(r.Context()); err != nil {
		return Stats{}, err
	}
	s.refused.Range(func(k, v any) bool {
		st.Refused[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return st, nil
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.stats(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleMetrics writes the accounting in the Prometheus text exposition
// format. It is a handful of counters, so it is written directly rather
// than through a client library.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	st, err := s.stats(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var b strings.Builder
	counter := func(name, help string, value func(c SourceStats) int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		for _, src := range st.Sources {
			fmt.Fprintf(&b, "%s{source=%q,source_name=%q} %d\n", name, src.ID, src.Name, value(src))
		}
	}
	counter("kith_events_received_total", "Events received, per source.", func(c SourceStats) int64 { return c.Received })
	counter("kith_events_accepted_total", "Events accepted and durably logged, per source.", func(c SourceStats) int64 { return c.Accepted })
	counter("kith_events_duplicate_total", "Events dropped as repeated messageIds, per source.", func(c SourceStats) int64 { return c.Duplicate })
	counter("kith_events_processed_total", "Accepted events applied to profiles, per source.", func(c SourceStats) int64 { return c.Processed })
	fmt.Fprintf(&b, "# HELP kith_events_rejected_total Events rejected, per source and reason.\n# TYPE kith_events_rejected_total counter\n")
	for _, src := range st.Sources {
		reasons := make([]string, 0, len(src.Rejected))
		for reason := range src.Rejected {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		for _, reason := range reasons {
			fmt.Fprintf(&b, "kith_events_rejected_total{source=%q,source_name=%q,reason=%q} %d\n", src.ID, src.Name, reason, src.Rejected[reason])
		}
	}
	fmt.Fprintf(&b, "# HELP kith_requests_refused_total Whole requests refused before any message was read, by reason.\n# TYPE kith_requests_refused_total counter\n")
	reasons := make([]string, 0, len(st.Refused))
	for reason := range st.Refused {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		fmt.Fprintf(&b, "kith_requests_refused_total{reason=%q} %d\n", reason, st.Refused[reason])
	}
	writeDestinationMetrics(&b, st.Destinations)
	fmt.Fprintf(&b, "# HELP kith_indexer_backlog_events Accepted events not yet applied to profiles.\n# TYPE kith_indexer_backlog_events gauge\nkith_indexer_backlog_events %d\n", st.Backlog)
	hs := s.workerHealth()
	fmt.Fprintf(&b, "# HELP kith_worker_failing Consecutive failed attempts of a background worker (0 when it is making progress).\n# TYPE kith_worker_failing gauge\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "kith_worker_failing{worker=%q} %d\n", h.Worker, h.Failing)
	}
	fmt.Fprintf(&b, "# HELP kith_worker_failures_total Failed attempts of a background worker since start.\n# TYPE kith_worker_failures_total counter\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "kith_worker_failures_total{worker=%q} %d\n", h.Worker, h.Failures)
	}
	fmt.Fprintf(&b, "# HELP kith_worker_skipped_total Items a background worker could not apply and set aside (each logged).\n# TYPE kith_worker_skipped_total counter\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "kith_worker_skipped_total{worker=%q} %d\n", h.Worker, h.Skipped)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.Tokens(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	if list == nil {
		list = []kith.Token{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": list})
}

// handleRevokeToken serves DELETE /v1/tokens/{id}; the secret stops
// working at once on this server (other servers on the same database
// within the token cache's few seconds).
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == tokenOf(r).ID {
		s.error(w, r, kith.Errorf(kith.ECONFLICT, "a token cannot revoke itself; use another admin token"))
		return
	}
	if err := s.store.RevokeToken(r.Context(), id); err != nil {
		s.error(w, r, err)
		return
	}
	s.tokMu.Lock()
	for k, c := range s.tokens {
		if c.tok.ID == id {
			delete(s.tokens, k)
		}
	}
	s.tokMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
