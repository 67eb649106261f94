package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/dmp"
	"github.com/kithcdp/kith/imports"
)

// maxDMPRejects bounds the rejected rows a DMP import's answer lists; the
// counts stay exact beyond it.
const maxDMPRejects = 1000

func (s *Server) dmpRoutes() {
	s.route("POST /v1/dmp/audiences", kith.ScopeImportsWrite, s.handleDMPImport)
	s.route("GET /v1/profiles/{ref}/dmp-audiences", kith.ScopeProfilesRead, s.handleProfileDMP)
	s.route("GET /v1/audiences/{key}/seeds", kith.ScopePIIRead, s.handleSeeds)
}

// handleDMPImport serves POST /v1/dmp/audiences?partner=NAME&format=csv:
// the body is a third-party audience file (gzip-compressed or not).
func (s *Server) handleDMPImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = dmp.FormatCSV
		if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "ndjson") || strings.Contains(ct, "jsonl") {
			format = dmp.FormatJSONL
		}
	}
	keyer, err := s.keyer(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	in, err := imports.Decompress(r.Body)
	if err != nil {
		s.error(w, r, kith.Errorf(kith.EINVALID, "the body: %v", err))
		return
	}
	m := &dmp.Matcher{Store: s.store, Keyer: keyer, Rules: s.rules.Load, Now: s.cfg.Now, TTL: s.cfg.DMPTTL,
		MaxInputBytes: uploadLimits.MaxInputBytes}
	rejects := []*dmp.RowError{}
	more := false
	sum, err := m.Import(r.Context(), q.Get("partner"), in, format, func(e *dmp.RowError) {
		if len(rejects) < maxDMPRejects {
			rejects = append(rejects, e)
		} else {
			more = true
		}
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"summary": sum, "rejects": rejects, "rejectsTruncated": more})
}

func (s *Server) handleProfileDMP(w http.ResponseWriter, r *http.Request) {
	canonical, err := s.resolve(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	as, err := s.profiles.ThirdPartyAudiences(r.Context(), canonical)
	if err != nil {
		s.error(w, r, err)
		return
	}
	type entry struct {
		kith.DMPAudience
		Provenance string `json:"provenance"`
	}
	out := make([]entry, len(as))
	for i, a := range as {
		out[i] = entry{a, kith.ProvenanceThirdParty}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

// handleSeeds serves GET /v1/audiences/{key}/seeds?platform=meta|google:
// the audience's look-alike seed file, consent-filtered, hashed, and
// refused below the minimum size.
func (s *Server) handleSeeds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := dmp.ParsePlatform(q.Get("platform"))
	if err != nil {
		s.error(w, r, kith.Errorf(kith.EINVALID, "platform must be meta or google"))
		return
	}
	key := r.PathValue("key")
	if s.cfg.Audiences != nil {
		if _, err := s.cfg.Audiences.Definition(kith.KindAudience, key); err != nil {
			s.error(w, r, err)
			return
		}
	}
	opt := dmp.SeedOptions{Platform: p, MinSize: s.cfg.MinSeedSize, DefaultRegion: s.rules.Load().DefaultRegion}
	if v := q.Get("min_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < opt.MinSize {
			s.error(w, r, kith.Errorf(kith.EINVALID, "min_size must be a whole number of at least the server's minimum, %d", opt.MinSize))
			return
		}
		opt.MinSize = n
	}
	out := &seedResponse{w: w, name: key + "-" + p.String() + "-seeds-" + s.cfg.Now().UTC().Format("20060102") + ".csv"}
	opt.Ready = func(sum dmp.SeedSummary) {
		h := w.Header()
		h.Set("X-Kith-Members", strconv.FormatInt(sum.Members, 10))
		h.Set("X-Kith-Exported", strconv.FormatInt(sum.Exported, 10))
		h.Set("X-Kith-Filtered-By-Consent", strconv.FormatInt(sum.FilteredByConsent, 10))
		h.Set("X-Kith-No-Contact", strconv.FormatInt(sum.NoContact, 10))
	}
	sum, err := dmp.ExportSeeds(r.Context(), s.store, key, opt, out)
	if err == nil {
		s.outputs.add("look_alike_seeds", sum.Exported, sum.FilteredByConsent)
	}
	if errors.Is(err, dmp.ErrTooFew) {
		s.errorWith(w, r, kith.Errorf(kith.ECONFLICT, "%v", err), map[string]any{"summary": sum})
		return
	}
	if err != nil && !out.started {
		s.error(w, r, err)
		return
	}
	if err != nil {
		s.log.Error("seed export cut short", "audience", key, "err", err)
	}
}

// seedResponse sends the seed file's headers, with the export's counts,
// just before its first byte: ExportSeeds writes only once the file is
// complete and large enough.
type seedResponse struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (o *seedResponse) Write(b []byte) (int, error) {
	if !o.started {
		o.started = true
		h := o.w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="`+o.name+`"`)
		o.w.WriteHeader(http.StatusOK)
	}
	return o.w.Write(b)
}
