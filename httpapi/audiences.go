package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/privacy"
)

// AudienceEngine keeps audiences and computed traits (audience.Engine).
type AudienceEngine interface {
	Put(ctx context.Context, d kith.Definition) (kith.Definition, error)
	Delete(ctx context.Context, kind, key string) error
	Definitions(kind string) []kith.Definition
	Definition(kind, key string) (kith.Definition, error)
	DryRun(ctx context.Context, text string, cond json.RawMessage, sample int) (int64, []string, error)
	ComputedTraits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	Status() audience.Status
	ProfileMemberships(ctx context.Context, canonicalID string) ([]kith.Member, error)
	// Reads and SavedReads tell what a definition reads, for
	// privacy.CheckReads and privacy.MaskTraits.
	Reads(d kith.Definition) ([]audience.Read, error)
	SavedReads(kind, key string) ([]audience.Read, bool)
}

// definitionBody is the body of POST /v1/audiences and
// /v1/computed-traits (and of PUT on one, without key).
type definitionBody struct {
	Key        string          `json:"key"`
	Definition string          `json:"definition"`
	Condition  json.RawMessage `json:"condition"`
}

// definitionOut is a definition as the API shows it; audiences carry
// their size.
type definitionOut struct {
	kith.Definition
	Size *int64 `json:"size,omitempty"`
}

func (s *Server) audienceRoutes() {
	eng := s.cfg.Audiences != nil
	for _, k := range []struct{ path, kind string }{{"/v1/audiences", kith.KindAudience}, {"/v1/computed-traits", kith.KindComputedTrait}} {
		kind := k.kind
		s.route("POST "+k.path, kith.ScopeDefinitionsWrite, s.needs(eng, "audiences are", s.handlePutDefinition(kind, true)))
		s.route("PUT "+k.path+"/{key}", kith.ScopeDefinitionsWrite, s.needs(eng, "audiences are", s.handlePutDefinition(kind, false)))
		s.route("DELETE "+k.path+"/{key}", kith.ScopeDefinitionsWrite, s.needs(eng, "audiences are", func(w http.ResponseWriter, r *http.Request) {
			if err := s.cfg.Audiences.Delete(r.Context(), kind, r.PathValue("key")); err != nil {
				s.error(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		s.route("GET "+k.path, kith.ScopeProfilesRead, s.needs(eng, "audiences are", func(w http.ResponseWriter, r *http.Request) {
			out := []definitionOut{}
			for _, d := range s.cfg.Audiences.Definitions(kind) {
				o, err := s.definitionOut(r.Context(), d)
				if err != nil {
					s.error(w, r, err)
					return
				}
				out = append(out, o)
			}
			writeJSON(w, http.StatusOK, page{Data: out})
		}))
		s.route("GET "+k.path+"/{key}", kith.ScopeProfilesRead, s.needs(eng, "audiences are", func(w http.ResponseWriter, r *http.Request) {
			d, err := s.cfg.Audiences.Definition(kind, r.PathValue("key"))
			if err != nil {
				s.error(w, r, err)
				return
			}
			o, err := s.definitionOut(r.Context(), d)
			if err != nil {
				s.error(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, o)
		}))
	}
	s.route("POST /v1/audiences/dry-run", kith.ScopeProfilesRead, s.needs(eng, "audiences are", s.handleDryRun))
	s.route("GET /v1/audiences/{key}/members", kith.ScopeProfilesRead, s.needs(eng, "audiences are", s.handleMembers))
	s.route("GET /v1/audience-changes", kith.ScopeProfilesRead, s.needs(eng, "audiences are", s.handleChanges))
	s.route("GET /v1/profiles/{ref}/audiences", kith.ScopeProfilesRead, s.needs(eng, "audiences are", s.handleProfileAudiences))
}

func (s *Server) definitionOut(ctx context.Context, d kith.Definition) (definitionOut, error) {
	o := definitionOut{Definition: d}
	if d.Kind == kith.KindAudience {
		n, err := s.store.AudienceSize(ctx, d.Key)
		if err != nil {
			return o, err
		}
		o.Size = &n
	}
	return o, nil
}

func (s *Server) handlePutDefinition(kind string, create bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body definitionBody
		if err := decodeJSON(r, &body); err != nil {
			s.error(w, r, err)
			return
		}
		if !create {
			if body.Key != "" && body.Key != r.PathValue("key") {
				s.error(w, r, kith.Errorf(kith.EINVALID, "key %q in the body differs from the path", body.Key))
				return
			}
			body.Key = r.PathValue("key")
		} else if _, err := s.cfg.Audiences.Definition(kind, body.Key); err == nil {
			s.error(w, r, kith.Errorf(kith.ECONFLICT, "%s %q exists; change it with PUT", kind, body.Key))
			return
		}
		d := kith.Definition{Kind: kind, Key: body.Key, Text: body.Definition, Condition: body.Condition}
		if err := s.checkReads(r, d, fmt.Sprintf("%s %q", kind, body.Key)); err != nil {
			s.error(w, r, err)
			return
		}
		if old, ok := s.cfg.Audiences.SavedReads(kind, body.Key); ok && !create {
			// Replacing a definition over personal data needs pii:read
			// too: its history stays under the key.
			if err := privacy.CheckReads(tokenOf(r), fmt.Sprintf("the %s %q it replaces", kind, body.Key), old); err != nil {
				s.error(w, r, err)
				return
			}
		}
		d, err := s.cfg.Audiences.Put(r.Context(), d)
		if err != nil && !errors.Is(err, audience.ErrUnchanged) {
			s.error(w, r, err)
			return
		}
		o, err := s.definitionOut(r.Context(), d)
		if err != nil {
			s.error(w, r, err)
			return
		}
		status := http.StatusOK
		if create {
			status = http.StatusCreated
		}
		writeJSON(w, status, o)
	}
}

func (s *Server) handleDryRun(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Definition string          `json:"definition"`
		Condition  json.RawMessage `json:"condition"`
		Sample     int             `json:"sample"`
	}
	if err := decodeJSON(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	if body.Sample <= 0 {
		body.Sample = 10
	}
	if err := s.checkReads(r, kith.Definition{Kind: kith.KindAudience, Key: "dry-run", Text: body.Definition, Condition: body.Condition}, "the dry run"); err != nil {
		s.error(w, r, err)
		return
	}
	size, sample, err := s.cfg.Audiences.DryRun(r.Context(), body.Definition, body.Condition, min(body.Sample, 1000))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if sample == nil {
		sample = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"size": size, "sample": sample})
}

// checkReads refuses definition d (as the request sent it) if it reads
// personal data and the token lacks pii:read (privacy.CheckReads); what
// names it in the error. A definition that does not parse is EINVALID.
func (s *Server) checkReads(r *http.Request, d kith.Definition, what string) error {
	reads, err := s.cfg.Audiences.Reads(d)
	if err != nil {
		return err
	}
	return privacy.CheckReads(tokenOf(r), what, reads)
}

// checkSaved refuses the saved audience key, for a member list, if it
// reads personal data and the token lacks pii:read.
func (s *Server) checkSaved(r *http.Request, key string) error {
	return privacy.CheckSaved(tokenOf(r), s.cfg.Audiences, key)
}

// hidden reports whether the request's token may not see who is in
// audience key: it reads personal data and the token lacks pii:read.
// Membership lists leave such audiences out.
func (s *Server) hidden(r *http.Request, key string) bool { return s.checkSaved(r, key) != nil }

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, err := s.cfg.Audiences.Definition(kith.KindAudience, key); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.checkSaved(r, key); err != nil {
		s.error(w, r, err)
		return
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// Paged like the other lists: cursor.next of one page is ?next= of
	// the following one.
	after := ""
	if next := r.URL.Query().Get("next"); next != "" {
		b, err := base64.RawURLEncoding.DecodeString(next)
		if err != nil {
			s.error(w, r, kith.Errorf(kith.EINVALID, "invalid next cursor"))
			return
		}
		after = string(b)
	}
	ms, err := s.store.Members(r.Context(), key, after, limit+1)
	if err != nil {
		s.error(w, r, err)
		return
	}
	size, err := s.store.AudienceSize(r.Context(), key)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var c cursor
	if len(ms) > limit {
		ms = ms[:limit]
		c = cursor{HasMore: true, Next: base64.RawURLEncoding.EncodeToString([]byte(ms[len(ms)-1].ProfileID))}
	}
	if ms == nil {
		ms = []kith.Member{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": ms, "cursor": c, "count": size})
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	var after int64
	v := q.Get("after")
	if next := q.Get("next"); next != "" {
		v = next // cursor.next of the previous page
	}
	if v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			s.error(w, r, kith.Errorf(kith.EINVALID, "after must be a change seq"))
			return
		}
	}
	if a := q.Get("audience"); a != "" {
		if err := s.checkSaved(r, a); err != nil {
			s.error(w, r, err)
			return
		}
	}
	profile := q.Get("profile")
	if profile != "" {
		if profile, err = s.resolveRef(r, profile); err != nil {
			s.error(w, r, err)
			return
		}
	}
	cs, err := s.store.MembershipChanges(r.Context(), after, q.Get("audience"), profile, limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	type change struct {
		kith.MembershipChange
		Event string `json:"event"`
	}
	out := make([]change, 0, len(cs))
	hide := map[string]bool{}
	for _, c := range cs {
		h, ok := hide[c.Audience]
		if !ok {
			h = s.hidden(r, c.Audience)
			hide[c.Audience] = h
		}
		if h {
			continue // the page may come out short; the cursor still moves on
		}
		ch := change{MembershipChange: c, Event: "Audience Exited"}
		if c.Entered {
			ch.Event = "Audience Entered"
		}
		out = append(out, ch)
	}
	var c cursor
	if len(cs) == limit {
		c = cursor{HasMore: true, Next: strconv.FormatInt(cs[len(cs)-1].Seq, 10)}
	}
	writeJSON(w, http.StatusOK, page{Data: out, Cursor: c})
}

func (s *Server) handleProfileAudiences(w http.ResponseWriter, r *http.Request) {
	id, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	all, err := s.cfg.Audiences.ProfileMemberships(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	ms := []kith.Member{}
	for _, m := range all {
		if !s.hidden(r, m.Audience) {
			ms = append(ms, m)
		}
	}
	writeJSON(w, http.StatusOK, page{Data: ms})
}
