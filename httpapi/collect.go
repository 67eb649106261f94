package httpapi

import (
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
)

// refuseWhenBehind answers 429 and reports true when more events wait to
// be processed than MaxBacklog (Backlogger.Waiting): the log then stops
// growing faster than the indexer drains it.
func (s *Server) refuseWhenBehind(w http.ResponseWriter, r *http.Request) bool {
	n := s.indexer.Waiting()
	if n <= s.cfg.MaxBacklog {
		return false
	}
	s.error(w, r, kith.Errorf(kith.EOVERLOADED, "processing is behind by %d events; retry shortly", n))
	return true
}

// handleCollect serves POST /v1/{endpoint} of the Segment Tracking API.
func (s *Server) handleCollect(endpoint string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		receivedAt := s.cfg.Now()
		body, err := s.readBody(r)
		if err != nil {
			s.countRefused(kith.ErrorCode(err))
			s.error(w, r, err)
			return
		}
		if s.refuseWhenBehind(w, r) {
			s.countRefused("backlog")
			return
		}
		// A key given by HTTP Basic (what SDKs send) is checked before the
		// body is parsed, so traffic with a bad key costs no parsing; a key
		// in the body can only be checked after.
		key, _, _ := r.BasicAuth()
		var src kith.Source
		if key != "" {
			if src, err = s.sourceByKey(r, key); err != nil {
				s.countRefused(kith.ErrorCode(err))
				s.error(w, r, err)
				return
			}
		}
		p := collect.Parse(body, endpoint, collect.Meta{ReceivedAt: receivedAt, IP: clientIP(r)}, s.cfg.Limits)
		if key == "" {
			if p.WriteKey == "" {
				s.countRefused("no_write_key")
				w.Header().Set("WWW-Authenticate", `Basic realm="kith"`)
				s.error(w, r, kith.Errorf(kith.EUNAUTHORIZED, "a write key is required (HTTP Basic username or writeKey in the body)"))
				return
			}
			if src, err = s.sourceByKey(r, p.WriteKey); err != nil {
				s.countRefused(kith.ErrorCode(err))
				s.error(w, r, err)
				return
			}
		}

		for i := range p.Messages {
			p.Messages[i].SourceID = src.ID
		}
		sub := collect.Submission{SourceID: src.ID, Messages: p.Messages}
		if len(p.Rejected) > 0 {
			sub.Rejected = map[string]int64{}
			for _, rej := range p.Rejected {
				sub.Rejected[rej.Reason]++
			}
		}
		out := s.committer.Submit(r.Context(), sub)
		if out.Err != nil {
			s.countRefused(kith.ErrorCode(out.Err))
			s.error(w, r, out.Err)
			return
		}
		rejected := p.Rejected
		if rejected == nil {
			rejected = []collect.Rejection{}
		}
		if len(p.Messages) == 0 {
			code, msg := kith.EINVALID, "no acceptable message in the request"
			if allTooLarge(p.Rejected) {
				code, msg = kith.ETOOLARGE, "every message is over the size limit"
			}
			s.errorWith(w, r, kith.Errorf(code, "%s", msg), map[string]any{"success": false, "rejected": rejected})
			return
		}
		dups, suppressed := 0, 0
		for i, d := range out.Duplicate {
			if out.Suppressed != nil && out.Suppressed[i] {
				suppressed++
			} else if d {
				dups++
			}
		}
		answer := map[string]any{
			"success":    true,
			"accepted":   len(p.Messages) - dups - suppressed,
			"duplicates": dups,
			"rejected":   rejected,
		}
		if suppressed > 0 {
			answer["suppressed"] = suppressed
		}
		writeJSON(w, http.StatusOK, answer)
	}
}

func allTooLarge(rs []collect.Rejection) bool {
	for _, r := range rs {
		if r.Reason != kith.ReasonEventTooLarge {
			return false
		}
	}
	return len(rs) > 0
}

// readBody reads the (possibly gzip-compressed) body within the limit.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	limit := int64(s.cfg.Limits.MaxRequestBytes)
	var rd io.Reader = r.Body
	// A compressed body may not exceed the limit either; its decompressed
	// form is bounded separately below.
	rd = io.LimitReader(rd, limit+1)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, kith.Errorf(kith.EINVALID, "invalid gzip body: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, kith.Errorf(kith.EINVALID, "unsupported Content-Encoding %q", enc)
	}
	body, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, kith.Errorf(kith.EINVALID, "invalid gzip body: %v", err)
		}
		return nil, kith.Errorf(kith.EINVALID, "reading body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, kith.Errorf(kith.ETOOLARGE, "request body is over the %d-byte limit", limit)
	}
	return body, nil
}

// sourceByKey authenticates a write key against a cached source table.
func (s *Server) sourceByKey(r *http.Request, key string) (kith.Source, error) {
	h := sha256.Sum256([]byte(key))
	s.srcMu.RLock()
	src, ok := s.srcByKey[h]
	age := time.Since(s.srcLoaded)
	s.srcMu.RUnlock()
	// Reload every 5 s, and on an unknown key at most once a second, so
	// that traffic with bad keys cannot make every request read the store.
	if age >= 5*time.Second || (!ok && age >= time.Second) {
		if err := s.reloadSources(r); err != nil {
			return kith.Source{}, err
		}
		s.srcMu.RLock()
		src, ok = s.srcByKey[h]
		s.srcMu.RUnlock()
	}
	if !ok {
		return src, kith.Errorf(kith.EUNAUTHORIZED, "unknown write key")
	}
	if src.Disabled {
		return src, kith.Errorf(kith.EFORBIDDEN, "source %q is disabled", src.Name)
	}
	return src, nil
}

func (s *Server) reloadSources(r *http.Request) error {
	list, err := s.store.Sources(r.Context())
	if err != nil {
		return err
	}
	m := make(map[[32]byte]kith.Source, len(list))
	for _, src := range list {
		var h [32]byte
		copy(h[:], src.KeyHash)
		m[h] = src
	}
	s.srcMu.Lock()
	s.srcByKey, s.srcLoaded = m, time.Now()
	s.srcMu.Unlock()
	return nil
}

func (s *Server) invalidateSources() {
	s.srcMu.Lock()
	s.srcLoaded = time.Time{}
	s.srcMu.Unlock()
}

// clientIP is the request's peer address, as Segment records context.ip.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}
