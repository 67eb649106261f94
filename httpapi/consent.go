package httpapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
)

// consentSource is the source admin-set consent decisions are recorded
// under (created on first use).
const consentSource = "consent-api"

func (s *Server) consentRoutes() {
	s.route("GET /v1/profiles/{ref}/consent", kith.ScopeProfilesRead, s.handleGetConsent)
	s.route("PUT /v1/profiles/{ref}/consent", kith.ScopePrivacyWrite, s.handlePutConsent)
}

// consentView is a profile's consent: each category's latest decision and
// the full history.
type consentView struct {
	Categories map[string]kith.Consent `json:"categories"`
	History    []kith.Consent          `json:"history"`
}

func (s *Server) consentOf(r *http.Request, canonical string) (consentView, error) {
	cur, h, err := s.profiles.Consent(r.Context(), canonical)
	if err != nil {
		return consentView{}, err
	}
	if h == nil {
		h = []kith.Consent{}
	}
	return consentView{Categories: cur, History: h}, nil
}

func (s *Server) handleGetConsent(w http.ResponseWriter, r *http.Request) {
	canonical, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	v, err := s.consentOf(r, canonical)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// handlePutConsent serves PUT /v1/profiles/{ref}/consent {"Advertising":
// true, …} (a preference centre). The decision is recorded the way an SDK
// records one — a `Segment Consent Preference Updated` event carrying
// context.consent.categoryPreferences, identified by one of the profile's
// identifiers — so it is in the log, in the history, and survives any
// re-derivation. The answer comes once the indexer has applied it.
func (s *Server) handlePutConsent(w http.ResponseWriter, r *http.Request) {
	var prefs map[string]bool
	if err := decodeJSON(r, &prefs); err != nil {
		s.error(w, r, err)
		return
	}
	if len(prefs) == 0 {
		s.error(w, r, kith.Errorf(kith.EINVALID, `name at least one category: {"Advertising": true, ...}`))
		return
	}
	for c := range prefs {
		if strings.TrimSpace(c) == "" || len(c) > 100 {
			s.error(w, r, kith.Errorf(kith.EINVALID, "a category name must be 1 to 100 characters"))
			return
		}
	}
	canonical, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	ids, err := s.store.Identities(r.Context(), canonical)
	if err != nil {
		s.error(w, r, err)
		return
	}
	src, _, err := s.importSource(r.Context(), consentSource)
	if err != nil {
		s.error(w, r, err)
		return
	}
	m, err := consentEvent(ids, prefs, tokenOf(r).ID, s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	m.SourceID = src.ID
	out := s.committer.Submit(r.Context(), collect.Submission{SourceID: src.ID, Messages: []kith.Message{m}})
	if out.Err != nil {
		s.error(w, r, out.Err)
		return
	}
	// Wait (briefly) until the indexer has applied it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := s.consentOf(r, canonical)
		if err != nil {
			s.error(w, r, err)
			return
		}
		for _, c := range v.History {
			if c.MessageID == m.MessageID {
				writeJSON(w, http.StatusOK, v)
				return
			}
		}
		if time.Now().After(deadline) {
			writeJSON(w, http.StatusAccepted, v) // recorded; not applied yet
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// consentEvent builds the event that records an admin-set decision,
// identified by the profile's strongest identifier.
func consentEvent(ids []kith.Identity, prefs map[string]bool, by string, now time.Time) (kith.Message, error) {
	rank := func(t string) int {
		switch t {
		case kith.IdentUserID:
			return 0
		case kith.IdentEmail:
			return 1
		case kith.IdentPhone:
			return 2
		case kith.IdentAnonymousID:
			return 4
		}
		return 3
	}
	sort.SliceStable(ids, func(i, j int) bool { return rank(ids[i].Type) < rank(ids[j].Type) })
	if len(ids) == 0 {
		return kith.Message{}, kith.Errorf(kith.ECONFLICT, "the profile has no identifier to record the decision against")
	}
	id := ids[0]
	now = now.UTC().Truncate(time.Microsecond)
	m := kith.Message{MessageID: kith.NewID("consent-"), Type: "track", Event: "Segment Consent Preference Updated",
		Timestamp: now, ReceivedAt: now}
	body := map[string]any{
		"type": "track", "event": m.Event, "messageId": m.MessageID,
		"timestamp": now.Format(time.RFC3339Nano), "receivedAt": now.Format(time.RFC3339Nano),
		"properties": map[string]any{"changedBy": by},
	}
	ctx := map[string]any{"consent": map[string]any{"categoryPreferences": prefs}, "library": map[string]any{"name": "kith-consent-api"}}
	switch id.Type {
	case kith.IdentUserID:
		m.UserID, body["userId"] = id.Value, id.Value
	case kith.IdentAnonymousID:
		m.AnonymousID, body["anonymousId"] = id.Value, id.Value
	default:
		ctx["externalIds"] = []any{map[string]any{"id": id.Value, "type": id.Type, "collection": "users", "encoding": "none"}}
	}
	body["context"] = ctx
	raw, err := json.Marshal(body)
	if err != nil {
		return kith.Message{}, err
	}
	m.Raw = raw
	// The identifier comes from the store, which on the embedded store
	// may hold text PostgreSQL could not; check as Parse checks.
	if p := kith.JSONTextProblem(raw); p != "" {
		return kith.Message{}, kith.Errorf(kith.EINVALID, "the consent event for %s %s", id.Type, p)
	}
	return m, nil
}

// outputCounts counts, per output, the profiles delivered and those
// filtered by consent, for /v1/stats.
type outputCounts struct {
	mu sync.Mutex
	m  map[string]*[2]atomic.Int64
}

func (o *outputCounts) add(output string, delivered, filtered int64) {
	o.mu.Lock()
	if o.m == nil {
		o.m = map[string]*[2]atomic.Int64{}
	}
	c, ok := o.m[output]
	if !ok {
		c = &[2]atomic.Int64{}
		o.m[output] = c
	}
	o.mu.Unlock()
	c[0].Add(delivered)
	c[1].Add(filtered)
}

// OutputStats is one output's count of profiles delivered and filtered by
// consent since the server started.
type OutputStats struct {
	Delivered         int64 `json:"delivered"`
	FilteredByConsent int64 `json:"filteredByConsent"`
}

func (o *outputCounts) snapshot() map[string]OutputStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]OutputStats{}
	for k, c := range o.m {
		out[k] = OutputStats{c[0].Load(), c[1].Load()}
	}
	return out
}
