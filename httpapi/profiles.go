package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/privacy"
)

// resolve turns {ref} — a profile id or "type:value" — into the canonical
// profile id.
func (s *Server) resolve(r *http.Request) (string, error) {
	return s.resolveRef(r, r.PathValue("ref"))
}

// resolveRef turns a profile reference into the canonical profile id
// (profile.Service.Resolve, as the console resolves one).
func (s *Server) resolveRef(r *http.Request, ref string) (string, error) {
	return s.profiles.Resolve(r.Context(), ref)
}

// keyer returns the identifier keyer for the store's secret, built once.
func (s *Server) keyer(r *http.Request) (identity.Keyer, error) {
	return s.profiles.Keyer(r.Context())
}

// page is the Segment Profile API list envelope.
type page struct {
	Data   any    `json:"data"`
	Cursor cursor `json:"cursor"`
}

type cursor struct {
	HasMore bool   `json:"has_more"`
	Next    string `json:"next"`
}

// limitParam reads ?limit= (def when absent, at most 1000).
func limitParam(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, kith.Errorf(kith.EINVALID, "limit must be an integer from 1 to 1000")
	}
	return n, nil
}

// offsetPage pages a small in-memory list with an opaque offset cursor.
func offsetPage[T any](r *http.Request, all []T) (page, error) {
	limit, err := limitParam(r, 100)
	if err != nil {
		return page{}, err
	}
	off := 0
	if next := r.URL.Query().Get("next"); next != "" {
		b, err := base64.RawURLEncoding.DecodeString(next)
		if err == nil {
			off, err = strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		}
		if err != nil || off < 0 || !strings.HasPrefix(string(b), "o:") {
			return page{}, kith.Errorf(kith.EINVALID, "invalid next cursor")
		}
	}
	off = min(off, len(all))
	end := min(off+limit, len(all))
	p := page{Data: all[off:end]}
	if end < len(all) {
		p.Cursor = cursor{HasMore: true, Next: base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))}
	}
	if all[off:end] == nil {
		p.Data = []T{}
	}
	return p, nil
}

func (s *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	id, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	p, err := s.store.Profile(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// verboseTrait is a trait with its provenance, for ?verbose=true.
type verboseTrait struct {
	Value      json.RawMessage `json:"value"`
	Provenance string          `json:"provenance"`
	SourceID   string          `json:"sourceId,omitempty"`
	MessageID  string          `json:"messageId,omitempty"`
	RunID      string          `json:"runId,omitempty"`
	EventTime  time.Time       `json:"eventTime"`
	ProfileID  string          `json:"profileId"`
	// Others are the key's losing values (see kith.Trait.Others).
	Others []verboseTrait `json:"others,omitempty"`
}

func toVerbose(t kith.Trait) verboseTrait {
	v := verboseTrait{Value: t.Value, Provenance: t.Provenance, SourceID: t.SourceID, MessageID: t.MessageID, RunID: t.RunID, EventTime: t.EventTime, ProfileID: t.ProfileID}
	for _, o := range t.Others {
		v.Others = append(v.Others, toVerbose(o))
	}
	return v
}

func (s *Server) handleTraits(w http.ResponseWriter, r *http.Request) {
	id, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// Computed traits come last: one replaces a trait of the same key.
	traits, err := s.profiles.Traits(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !tokenOf(r).HasScope(kith.ScopePIIRead) {
		traits = privacy.MaskTraits(traits, s.cfg.Audiences)
	}
	verbose := r.URL.Query().Get("verbose") == "true"
	out := make(map[string]any, len(traits))
	for _, t := range traits {
		if verbose {
			out[t.Key] = toVerbose(t)
		} else {
			out[t.Key] = t.Value
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"traits": out, "cursor": cursor{}})
}

// profileList serves a paginated list read from the store for the
// profile {ref} resolves to (identities, merges).
func profileList[T any](s *Server, list func(ctx context.Context, canonicalID string) ([]T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.resolve(r)
		if err != nil {
			s.error(w, r, err)
			return
		}
		all, err := list(r.Context(), id)
		if err != nil {
			s.error(w, r, err)
			return
		}
		p, err := offsetPage(r, all)
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	}
}

func timeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, kith.Errorf(kith.EINVALID, "%s must be an RFC 3339 time", name)
	}
	return t, nil
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	id, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := kith.TimelineQuery{Type: r.URL.Query().Get("type"), Event: r.URL.Query().Get("event")}
	if q.Start, err = timeParam(r, "start"); err != nil {
		s.error(w, r, err)
		return
	}
	if q.End, err = timeParam(r, "end"); err != nil {
		s.error(w, r, err)
		return
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if next := r.URL.Query().Get("next"); next != "" {
		c, err := decodeEventCursor(next)
		if err != nil {
			s.error(w, r, err)
			return
		}
		q.Before = &c
	}
	q.Limit = limit + 1
	entries, err := s.store.Timeline(r.Context(), id, q)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var p page
	if len(entries) > limit {
		entries = entries[:limit]
		last := entries[len(entries)-1]
		p.Cursor = cursor{HasMore: true, Next: encodeEventCursor(kith.TimelineCursor{Timestamp: last.Timestamp, Seq: last.Seq})}
	}
	seqs := make([]int64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	msgs, err := s.store.EventsBySeq(r.Context(), seqs)
	if err != nil {
		s.error(w, r, err)
		return
	}
	mask := !tokenOf(r).HasScope(kith.ScopePIIRead)
	data := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		data[i] = m.Raw
		if mask {
			data[i] = privacy.MaskEvent(m.Raw)
		}
	}
	p.Data = data
	writeJSON(w, http.StatusOK, p)
}

func encodeEventCursor(c kith.TimelineCursor) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "t:%d:%d", c.Timestamp.UnixMicro(), c.Seq))
}

func decodeEventCursor(s string) (kith.TimelineCursor, error) {
	bad := kith.Errorf(kith.EINVALID, "invalid next cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return kith.TimelineCursor{}, bad
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 3 || parts[0] != "t" {
		return kith.TimelineCursor{}, bad
	}
	us, err1 := strconv.ParseInt(parts[1], 10, 64)
	seq, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return kith.TimelineCursor{}, bad
	}
	return kith.TimelineCursor{Timestamp: time.UnixMicro(us).UTC(), Seq: seq}, nil
}
