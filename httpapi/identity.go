package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/privacy"
)

// handleMerge joins two profiles no event links: {"with": "<ref>",
// "reason": "…"}.
func (s *Server) handleMerge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		With   string `json:"with"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.With == "" || strings.TrimSpace(req.Reason) == "" {
		s.error(w, r, kith.Errorf(kith.EINVALID, `body must set "with" (a profile reference) and a "reason"`))
		return
	}
	a, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	b, err := s.resolveRef(r, req.With)
	if err != nil {
		s.error(w, r, err)
		return
	}
	m, err := s.cfg.Unmerger.Link(r.Context(), kith.Link{A: a, B: b, Kind: kith.LinkManual, By: tokenOf(r).ID, Reason: strings.TrimSpace(req.Reason), At: s.cfg.Now()})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"profile": m.Survivor, "merge": m})
}

func (s *Server) handleReviewList(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	switch status {
	case "":
		status = kith.ReviewPending
	case "all":
		status = ""
	case kith.ReviewPending, kith.ReviewAccepted, kith.ReviewRejected:
	default:
		s.error(w, r, kith.Errorf(kith.EINVALID, "status must be pending, accepted, rejected or all"))
		return
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	items, err := s.store.ReviewItems(r.Context(), status, limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if items == nil {
		items = []kith.ReviewItem{}
	}
	if !tokenOf(r).HasScope(kith.ScopePIIRead) {
		for i := range items {
			items[i].Evidence = privacy.MaskEvidence(items[i].Evidence)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": items})
}

func (s *Server) handleReviewGet(w http.ResponseWriter, r *http.Request) {
	it, err := s.store.ReviewItem(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !tokenOf(r).HasScope(kith.ScopePIIRead) {
		it.Evidence = privacy.MaskEvidence(it.Evidence)
	}
	writeJSON(w, http.StatusOK, it)
}

// handleReviewDecide accepts (the pair is linked, its match evidence kept
// on the merge's link) or rejects a queued pair.
func (s *Server) handleReviewDecide(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Decision string `json:"decision"`
		Reason   string `json:"reason"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	it, err := s.store.ReviewItem(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if it.Status != kith.ReviewPending {
		s.error(w, r, kith.Errorf(kith.ECONFLICT, "review item %s is already %s", it.ID, it.Status))
		return
	}
	by := tokenOf(r).ID
	switch req.Decision {
	case "accept":
		reason := strings.TrimSpace(req.Reason)
		if reason == "" {
			reason = "accepted in review"
		}
		m, err := s.cfg.Unmerger.Link(r.Context(), kith.Link{
			A: it.A, B: it.B, Kind: kith.LinkProbabilistic, Weight: it.Weight, Evidence: it.Evidence,
			By: by, Reason: reason, At: s.cfg.Now(),
		})
		// One already (another decision joined them, or this one did
		// before the answer was lost): accepting is still right.
		if err != nil && !errors.Is(err, pipeline.ErrAlreadyOne) {
			s.error(w, r, err)
			return
		}
		if err := s.store.DecideReview(r.Context(), it.ID, kith.ReviewAccepted, by, reason, s.cfg.Now()); err != nil {
			s.error(w, r, err)
			return
		}
		it, _ = s.store.ReviewItem(r.Context(), it.ID)
		out := map[string]any{"item": it}
		if err == nil {
			out["merge"] = m
		}
		writeJSON(w, http.StatusOK, out)
	case "reject":
		if err := s.store.DecideReview(r.Context(), it.ID, kith.ReviewRejected, by, strings.TrimSpace(req.Reason), s.cfg.Now()); err != nil {
			s.error(w, r, err)
			return
		}
		it, _ = s.store.ReviewItem(r.Context(), it.ID)
		writeJSON(w, http.StatusOK, map[string]any{"item": it})
	default:
		s.error(w, r, kith.Errorf(kith.EINVALID, `decision must be "accept" or "reject"`))
	}
}

// handleMatchRun runs probabilistic matching and answers the finished run.
func (s *Server) handleMatchRun(w http.ResponseWriter, r *http.Request) {
	run, err := s.cfg.Matcher.Run(r.Context())
	if err != nil && run.ID == "" {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// handleDetach removes an identifier from a profile:
// {"identifier": "email:…", "reason": "…"}.
func (s *Server) handleDetach(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Identifier string `json:"identifier"`
		Reason     string `json:"reason"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	id, ok := s.rules.Load().ParseRef(req.Identifier)
	if !ok || strings.TrimSpace(req.Reason) == "" {
		s.error(w, r, kith.Errorf(kith.EINVALID, `body must set "identifier" (type:value) and a "reason"`))
		return
	}
	p, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	res, err := s.cfg.Unmerger.Detach(r.Context(), pipeline.Detach{Profile: p, Identifier: id, By: tokenOf(r).ID, Reason: strings.TrimSpace(req.Reason), At: s.cfg.Now()})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// RuleSource holds the identity rules in force (identity.Current). The
// server hands the API the source the indexer, the audience engine, the
// privacy gate and the console read, so replacing the rules here, once,
// replaces them for all of them.
type RuleSource interface {
	Load() *identity.Rules
	Set(r *identity.Rules)
}

// handleSetRules replaces the identity rules: validated, stored, and in
// force for the events still to come — for the indexer from its next
// batch, and for everyone else who reads identifiers from their next read.
func (s *Server) handleSetRules(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		s.error(w, r, kith.Errorf(kith.ETOOLARGE, "rules too large"))
		return
	}
	if err := checkJSONText(raw); err != nil {
		s.error(w, r, err)
		return
	}
	rules, err := identity.ParseRules(raw)
	if err != nil {
		s.error(w, r, kith.Errorf(kith.EINVALID, "%v", err))
		return
	}
	s.setRules.Lock()
	defer s.setRules.Unlock()
	if err := s.store.SetIdentityRules(r.Context(), raw); err != nil {
		s.error(w, r, err)
		return
	}
	s.rules.Set(rules)
	writeJSON(w, http.StatusOK, rules)
}

// handleUnmerge undoes one of the profile's merges:
// {"merge_id": "m_…", "reason": "…"} → the two resulting profile ids and
// the recorded split.
func (s *Server) handleUnmerge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MergeID string `json:"merge_id"`
		Reason  string `json:"reason"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.MergeID == "" || strings.TrimSpace(req.Reason) == "" {
		s.error(w, r, kith.Errorf(kith.EINVALID, `body must set "merge_id" and a "reason"`))
		return
	}
	id, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	res, err := s.cfg.Unmerger.Unmerge(r.Context(), pipeline.Unmerge{
		Profile: id, MergeID: req.MergeID, By: tokenOf(r).ID, Reason: strings.TrimSpace(req.Reason), At: s.cfg.Now(),
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"profiles": res.Profiles, "split": res.Split})
}
