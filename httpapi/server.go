// Package httpapi is Kith's HTTP adapter: the Segment-compatible collection
// endpoints, the admin API (sources, tokens, stats), the profile API,
// Prometheus metrics, health and the OpenAPI document. It translates HTTP to
// domain calls and domain errors to stable JSON error codes, in one place.
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/dmp"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/privacy"
	"github.com/kithcdp/kith/profile"
)

// Committer makes submissions durable (collect.Committer).
type Committer interface {
	Submit(ctx context.Context, s collect.Submission) collect.Outcome
}

// Backlogger reports the indexer's unapplied events (pipeline.Indexer):
// all of them, and those new events made (Waiting), which collection and
// imports are refused on.
type Backlogger interface {
	Backlog() int64
	Waiting() int64
}

// rebuilder reports a rebuild of the derived state from the log
// (pipeline.Indexer): /healthz shows its progress.
type rebuilder interface {
	Rebuild() kith.RebuildProgress
}

// Config tunes the HTTP layer.
type Config struct {
	Limits collect.Limits
	// MaxBacklog is the number of committed but unprocessed events beyond
	// which collection answers 429, so the log cannot grow without bound.
	MaxBacklog int64
	Logger     *slog.Logger
	Now        func() time.Time
	// Insights runs insight analyses; nil leaves the insights endpoints
	// answering that insights are not enabled. InsightConfig is the
	// configuration requests start from.
	Insights      InsightRunner
	InsightConfig insights.Config
	// IdentityRules holds the identity rules in force, the source the
	// indexer, the audience engine, the privacy gate and the console read
	// too (identity.Current): the API normalises identifier references
	// with them, and PUT /v1/identity/rules replaces them there for all.
	// nil means identity.DefaultRules, for the API alone.
	IdentityRules RuleSource
	// Unmerger undoes merges (the running indexer); nil leaves unmerge
	// answering that it is not available.
	Unmerger Unmerger
	// Matcher runs probabilistic matching (profilematch.Job); nil leaves
	// /v1/match/runs answering that it is not available.
	Matcher Matcher
	// Audiences, if set, serves audiences and computed traits; computed
	// traits then show among a profile's traits.
	Audiences AudienceEngine
	// Loading, if set, says what the server is still loading (the demo
	// dataset); /healthz answers 503 until it returns "".
	Loading func() string
	// DMPTTL is how long third-party audiences last when their file gives
	// no expiry (dmp.DefaultTTL if 0); MinSeedSize is the smallest
	// look-alike seed file exported (dmp.DefaultMinSeedSize if 0).
	DMPTTL      time.Duration
	MinSeedSize int
	// Eraser takes erasure requests; nil leaves POST /v1/privacy/erasures
	// answering that erasure is not available.
	Eraser Eraser
	// Retention sweeps by RetentionPolicy; nil leaves the retention
	// endpoints answering that retention is not available.
	Retention       Retention
	RetentionPolicy privacy.Policy
	// Workers are the background workers whose health /healthz and
	// /metrics report (the indexer, the audience engine); the server's
	// own audit writer is always among them.
	Workers []Worker
	// Destinations is the delivery engine (activation.Engine), told of
	// every change the destinations API makes; nil leaves destinations
	// stored, served and accounted for, but delivered by nothing this
	// server runs, and replaying their dead letters not available.
	Destinations DestinationEngine
}

// Worker is a background worker that reports its health.
type Worker interface {
	Health() kith.WorkerHealth
}

// Matcher runs probabilistic matching over the profiles.
type Matcher interface {
	Run(ctx context.Context) (kith.InsightRun, error)
}

// Unmerger changes the identity graph on an admin's request: undoes a
// merge, joins two profiles (pipeline.Indexer).
type Unmerger interface {
	Unmerge(ctx context.Context, u pipeline.Unmerge) (pipeline.UnmergeResult, error)
	Link(ctx context.Context, l kith.Link) (kith.Merge, error)
	Detach(ctx context.Context, d pipeline.Detach) (pipeline.DetachResult, error)
}

// tokenKey carries the authenticated admin token in a request's context.
type tokenKey struct{}

// tokenOf returns the admin token that authenticated r.
func tokenOf(r *http.Request) kith.Token { return tokenIn(r.Context()) }

// tokenIn returns the admin token a request's context carries.
func tokenIn(ctx context.Context) kith.Token {
	t, _ := ctx.Value(tokenKey{}).(kith.Token)
	return t
}

// Server serves the whole API over one store.
type Server struct {
	store     kith.Store
	committer Committer
	indexer   Backlogger
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux

	srcMu     sync.RWMutex
	srcByKey  map[[32]byte]kith.Source
	srcLoaded time.Time

	refused sync.Map // reason -> *atomic.Int64, whole requests refused

	tokMu  sync.Mutex
	tokens map[[32]byte]cachedToken

	// profiles resolves references and reads profiles, as the console
	// does (profile.Service).
	profiles *profile.Service

	// rules are the identity rules in force (PUT /v1/identity/rules
	// replaces them; setRules serialises the replacements, so the rules
	// stored are the rules in force).
	rules    RuleSource
	setRules sync.Mutex

	routeList []Route
	auditor   *auditor
	outputs   outputCounts

	// importMu serialises finding-or-creating an import's source, so two
	// imports naming a new source create it once.
	importMu sync.Mutex
}

// New builds a Server.
func New(store kith.Store, committer Committer, indexer Backlogger, cfg Config) *Server {
	if cfg.Limits.MaxRequestBytes == 0 {
		cfg.Limits = collect.DefaultLimits()
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 2_000_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdentityRules == nil {
		cfg.IdentityRules = identity.NewCurrent(nil)
	}
	if cfg.DMPTTL <= 0 {
		cfg.DMPTTL = dmp.DefaultTTL
	}
	if cfg.MinSeedSize <= 0 {
		cfg.MinSeedSize = dmp.DefaultMinSeedSize
	}
	s := &Server{store: store, committer: committer, indexer: indexer, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), tokens: map[[32]byte]cachedToken{}}
	s.rules = cfg.IdentityRules
	s.profiles = profile.New(profile.Config{Store: store, Audiences: cfg.Audiences, Rules: s.rules.Load, Now: cfg.Now})
	s.auditor = newAuditor(store, cfg.Logger)
	s.routes()
	return s
}

// Close writes out the audit entries still queued. The server must not
// serve requests afterwards.
func (s *Server) Close() { s.auditor.close() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

//go:embed openapi.json
var openapiDoc []byte

func (s *Server) routes() {
	for _, ep := range []string{"identify", "track", "page", "screen", "group", "alias", "batch"} {
		s.mux.HandleFunc("POST /v1/"+ep, s.handleCollect(ep))
		s.routeList = append(s.routeList, Route{Pattern: "POST /v1/" + ep, Auth: AuthWriteKey})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, kith.Errorf(kith.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openapiDoc)
	})
	s.routeList = append(s.routeList, Route{Pattern: "GET /healthz", Auth: AuthNone}, Route{Pattern: "GET /openapi.json", Auth: AuthNone})
	s.route("GET /metrics", kith.ScopeStatsRead, s.handleMetrics)

	s.route("POST /v1/sources", kith.ScopeSourcesWrite, s.handleCreateSource)
	s.route("GET /v1/sources", kith.ScopeSourcesRead, s.handleListSources)
	s.route("PATCH /v1/sources/{id}", kith.ScopeSourcesWrite, s.handleUpdateSource)
	s.route("POST /v1/tokens", kith.ScopeAdmin, s.handleCreateToken)
	s.route("GET /v1/tokens", kith.ScopeAdmin, s.handleListTokens)
	s.route("GET /v1/audit", kith.ScopeAuditRead, s.handleAudit)
	s.route("DELETE /v1/tokens/{id}", kith.ScopeAdmin, s.handleRevokeToken)
	s.route("GET /v1/stats", kith.ScopeStatsRead, s.handleStats)

	s.route("GET /v1/profiles/{ref}", kith.ScopeProfilesRead, s.handleProfile)
	s.route("GET /v1/profiles/{ref}/traits", kith.ScopeProfilesRead, s.handleTraits)
	s.route("GET /v1/profiles/{ref}/identities", kith.ScopeProfilesRead, profileList(s, func(ctx context.Context, id string) ([]kith.Identity, error) {
		ids, err := s.store.Identities(ctx, id)
		if err == nil && !tokenIn(ctx).HasScope(kith.ScopePIIRead) {
			ids = privacy.MaskIdentities(ids)
		}
		return ids, err
	}))
	s.route("GET /v1/profiles/{ref}/events", kith.ScopeProfilesRead, s.handleEvents)
	s.route("GET /v1/profiles/{ref}/merges", kith.ScopeProfilesRead, profileList(s, func(ctx context.Context, id string) ([]kith.Merge, error) {
		ms, err := s.store.Merges(ctx, id)
		if err == nil && !tokenIn(ctx).HasScope(kith.ScopePIIRead) {
			ms = privacy.MaskMerges(ms)
		}
		return ms, err
	}))

	s.route("POST /v1/profiles/{ref}/unmerge", kith.ScopeProfilesWrite, s.needs(s.cfg.Unmerger != nil, "graph changes are", s.handleUnmerge))
	s.route("POST /v1/profiles/{ref}/merge", kith.ScopeProfilesWrite, s.needs(s.cfg.Unmerger != nil, "graph changes are", s.handleMerge))
	s.route("POST /v1/profiles/{ref}/identities/detach", kith.ScopeProfilesWrite, s.needs(s.cfg.Unmerger != nil, "graph changes are", s.handleDetach))
	s.route("POST /v1/match/runs", kith.ScopeProfilesWrite, s.needs(s.cfg.Matcher != nil, "matching is", s.handleMatchRun))
	s.route("GET /v1/review", kith.ScopeProfilesRead, s.handleReviewList)
	s.route("GET /v1/review/{id}", kith.ScopeProfilesRead, s.handleReviewGet)
	s.route("POST /v1/review/{id}", kith.ScopeProfilesWrite, s.needs(s.cfg.Unmerger != nil, "graph changes are", s.handleReviewDecide))
	s.route("GET /v1/identity/rules", kith.ScopeProfilesRead, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.rules.Load())
	})
	s.route("PUT /v1/identity/rules", kith.ScopeAdmin, s.needs(s.cfg.Unmerger != nil, "graph changes are", s.handleSetRules))

	s.route("POST /v1/insights/runs", kith.ScopeInsightsWrite, s.needs(s.cfg.Insights != nil, "insights are", s.handleStartRun))
	s.route("POST /v1/insights/validations", kith.ScopeInsightsWrite, s.needs(s.cfg.Insights != nil, "insights are", s.handleValidate))
	s.route("GET /v1/insights/runs", kith.ScopeInsightsRead, s.handleListRuns)
	s.route("GET /v1/insights/runs/{id}", kith.ScopeInsightsRead, s.handleGetRun)
	s.route("GET /v1/insights/runs/{id}/charts/{name}", kith.ScopeInsightsRead, s.handleRunChart)
	s.audienceRoutes()
	s.importRoutes()
	s.dmpRoutes()
	s.privacyRoutes()
	s.consentRoutes()
	s.destinationRoutes()
}

// Route authentication kinds.
const (
	// AuthNone: public (health, the API description).
	AuthNone = "none"
	// AuthWriteKey: the collection endpoints, for a source's write key.
	AuthWriteKey = "write_key"
	// AuthToken: the admin API, for an admin token with Route.Scope.
	AuthToken = "token"
)

// Route is one registered endpoint and what it takes to call it.
type Route struct {
	Pattern string // "METHOD /path/{param}"
	Auth    string
	Scope   string // for AuthToken
}

// Routes lists every endpoint the server registered, so that tests can
// prove each refuses what it must.
func (s *Server) Routes() []Route { return slices.Clone(s.routeList) }

// route registers an admin endpoint: bearer token with scope required.
func (s *Server) route(pattern, scope string, h http.HandlerFunc) {
	s.routeList = append(s.routeList, Route{Pattern: pattern, Auth: AuthToken, Scope: scope})
	s.mux.HandleFunc(pattern, s.admin(pattern, scope, h))
}

// needs answers 404 for an endpoint whose engine this server runs without
// (insights, the indexer's graph operations, matching).
func (s *Server) needs(available bool, what string, h http.HandlerFunc) http.HandlerFunc {
	if available {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, kith.Errorf(kith.ENOTFOUND, "%s not available on this server", what))
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Loading != nil {
		if what := s.cfg.Loading(); what != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "loading", "loading": what})
			return
		}
	}
	var stuck []kith.WorkerHealth
	for _, h := range s.workerHealth() {
		if h.Stuck() {
			stuck = append(stuck, h)
		}
	}
	body := map[string]any{"status": "ok", "backlog": s.indexer.Backlog()}
	if rb, ok := s.indexer.(rebuilder); ok {
		// The server serves meanwhile: profiles are as rebuilt so far.
		if p := rb.Rebuild(); p.Active {
			body["rebuilding"] = map[string]any{"position": p.Position, "of": p.Of, "percent": p.Percent()}
		}
	}
	if len(stuck) > 0 {
		body["status"], body["failing"] = "degraded", stuck
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// workerHealth returns the health of every background worker.
func (s *Server) workerHealth() []kith.WorkerHealth {
	hs := []kith.WorkerHealth{s.auditor.status.Health()}
	for _, w := range s.cfg.Workers {
		hs = append(hs, w.Health())
	}
	return hs
}

// admin wraps a handler with bearer-token authentication and a scope check.
func (s *Server) admin(pattern, scope string, h http.HandlerFunc) http.HandlerFunc {
	audited := pattern != "GET /metrics" // scraped every few seconds
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kith"`)
			s.error(w, r, kith.Errorf(kith.EUNAUTHORIZED, "an admin token is required (Authorization: Bearer <token>)"))
			return
		}
		tok, err := s.token(r, secret)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			s.error(w, r, kith.Errorf(kith.EUNAUTHORIZED, "unknown admin token"))
			return
		} else if err != nil {
			s.error(w, r, err)
			return
		}
		if !tok.HasScope(scope) {
			s.error(w, r, kith.Errorf(kith.EFORBIDDEN, "token %q lacks scope %q", tok.Name, scope))
			if audited {
				s.audit(r, tok, pattern, http.StatusForbidden)
			}
			return
		}
		if !audited {
			if err := checkRequestText(pattern, r); err != nil {
				s.error(w, r, err)
				return
			}
			h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		ctx := context.WithValue(context.WithValue(r.Context(), tokenKey{}, tok), auditNoteKey{}, &auditNote{})
		r = r.WithContext(ctx)
		if err := checkRequestText(pattern, r); err != nil {
			s.error(sw, r, err)
		} else {
			h(sw, r)
		}
		s.audit(r, tok, pattern, sw.status)
	}
}

// checkRequestText refuses a request whose path or query holds text no
// store can hold (kith.TextProblem), before a handler looks anything up
// with it: a path value names nothing that exists (ENOTFOUND), a query
// parameter is invalid (EINVALID, naming it).
func checkRequestText(pattern string, r *http.Request) error {
	for _, m := range routeParam.FindAllStringSubmatch(pattern, -1) {
		if p := kith.TextProblem(r.PathValue(m[1])); p != "" {
			return kith.Errorf(kith.ENOTFOUND, "no such %s: the one in the path %s", m[1], p)
		}
	}
	for k, vs := range r.URL.Query() {
		if p := kith.TextProblem(k); p != "" {
			return kith.Errorf(kith.EINVALID, "query parameter name %s %s", kith.QuoteText(k), p)
		}
		for _, v := range vs {
			if p := kith.TextProblem(v); p != "" {
				return kith.Errorf(kith.EINVALID, "query parameter %s %s", k, p)
			}
		}
	}
	return nil
}

// token authenticates an admin token, remembering valid ones for a few
// seconds so that reads do not pay a store lookup each.
func (s *Server) token(r *http.Request, secret string) (kith.Token, error) {
	sum := sha256.Sum256([]byte(secret))
	s.tokMu.Lock()
	c, ok := s.tokens[sum]
	s.tokMu.Unlock()
	if ok && time.Since(c.at) < 5*time.Second {
		return c.tok, nil
	}
	tok, err := s.store.TokenByHash(r.Context(), sum[:])
	if err != nil {
		return tok, err
	}
	s.tokMu.Lock()
	if len(s.tokens) > 10000 {
		s.tokens = map[[32]byte]cachedToken{}
	}
	s.tokens[sum] = cachedToken{tok: tok, at: time.Now()}
	s.tokMu.Unlock()
	return tok, nil
}

type cachedToken struct {
	tok kith.Token
	at  time.Time
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON reads a small admin request body. A body holding text no
// store can hold (a NUL character, invalid UTF-8) is refused naming the
// field, so no handler stores it or looks anything up with it.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return kith.Errorf(kith.ETOOLARGE, "request body too large")
		}
		return kith.Errorf(kith.EINVALID, "reading the body: %v", err)
	}
	if err := checkJSONText(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return kith.Errorf(kith.EINVALID, "invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		// {"a":true} {"b":false} would otherwise apply only the first.
		return kith.Errorf(kith.EINVALID, "invalid JSON body: more follows the first JSON value")
	}
	return nil
}

// checkJSONText refuses a JSON body holding text no store can hold,
// naming the field.
func checkJSONText(b []byte) error {
	p := kith.JSONTextProblem(b)
	if p == "" {
		return nil
	}
	if path, why := kith.JSONTextPath(b); path != "" {
		return kith.Errorf(kith.EINVALID, "%s %s", path, why)
	}
	return kith.Errorf(kith.EINVALID, "request body %s", p)
}

func (s *Server) countRefused(reason string) {
	v, _ := s.refused.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}
