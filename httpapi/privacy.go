package httpapi

import (
	"context"
	"net/http"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/privacy"
)

// Retention is the retention sweeper (privacy.Sweeper).
type Retention interface {
	Sweep(ctx context.Context) (privacy.SweepReport, error)
	Last() (last, totals privacy.SweepReport)
}

// Eraser takes erasure requests (privacy.Service).
type Eraser interface {
	Request(ctx context.Context, ref string, suppress bool, by string) (kith.Erasure, error)
	// Erasure and Erasures read requests with how their deletions are
	// doing at each destination.
	Erasure(ctx context.Context, id string) (kith.Erasure, error)
	Erasures(ctx context.Context, limit int) ([]kith.Erasure, error)
}

// erasures reads erasure requests through the Eraser, which adds each
// destination's deletion status, or from the store when there is none.
func (s *Server) erasures() interface {
	Erasure(ctx context.Context, id string) (kith.Erasure, error)
	Erasures(ctx context.Context, limit int) ([]kith.Erasure, error)
} {
	if s.cfg.Eraser != nil {
		return s.cfg.Eraser
	}
	return s.store
}

func (s *Server) privacyRoutes() {
	available := s.cfg.Eraser != nil
	s.route("POST /v1/privacy/erasures", kith.ScopePrivacyWrite, s.needs(available, "erasure is", s.handleErase))
	s.route("GET /v1/privacy/erasures", kith.ScopePrivacyWrite, s.handleListErasures)
	s.route("GET /v1/privacy/erasures/{id}", kith.ScopePrivacyWrite, s.handleGetErasure)
	s.route("GET /v1/privacy/profiles/{ref}/export", kith.ScopePrivacyWrite, s.handleExport)
	s.route("GET /v1/privacy/retention", kith.ScopePrivacyWrite, s.needs(s.cfg.Retention != nil, "retention is", func(w http.ResponseWriter, r *http.Request) {
		last, totals := s.cfg.Retention.Last()
		writeJSON(w, http.StatusOK, map[string]any{"policy": s.cfg.RetentionPolicy, "lastSweep": last, "sinceStart": totals})
	}))
	s.route("POST /v1/privacy/retention/sweeps", kith.ScopePrivacyWrite, s.needs(s.cfg.Retention != nil, "retention is", func(w http.ResponseWriter, r *http.Request) {
		rep, err := s.cfg.Retention.Sweep(r.Context())
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	}))
}

// handleErase serves POST /v1/privacy/erasures {"identifier","suppress"}:
// 202 with the request's id; the erasure runs in the background.
func (s *Server) handleErase(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Identifier string `json:"identifier"`
		Suppress   bool   `json:"suppress"`
	}
	if err := decodeJSON(r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	noteAudit(r, "identifier="+s.auditRef(r, req.Identifier))
	e, err := s.cfg.Eraser.Request(r.Context(), req.Identifier, req.Suppress, tokenOf(r).ID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	noteAudit(r, "id="+e.ID)
	writeJSON(w, http.StatusAccepted, e)
}

func (s *Server) handleGetErasure(w http.ResponseWriter, r *http.Request) {
	e, err := s.erasures().Erasure(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) handleListErasures(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	list, err := s.erasures().Erasures(r.Context(), limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if list == nil {
		list = []kith.Erasure{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": list})
}

// handleExport serves GET /v1/privacy/profiles/{ref}/export: everything
// held about the person, as one JSON document (profile.Service.Export, the
// document the console's export hands out).
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	canonical, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	doc, err := s.profiles.Export(r.Context(), canonical)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+canonical+`-export.json"`)
	writeJSON(w, http.StatusOK, doc)
}
