package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/console"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/postgres"
	"github.com/kithcdp/kith/privacy"
	"github.com/kithcdp/kith/profilematch"
	"github.com/kithcdp/kith/sqlite"
)

// ServeConfig is the configuration of `kith serve`. Flags override
// environment variables, which override the defaults.
type ServeConfig struct {
	DataDir     string
	Addr        string
	PostgresURL string
	AdminToken  string
	DedupWindow time.Duration
	Limits      collect.Limits
	MaxBacklog  int64
	BatchSize   int
	// InsightsEvery is the interval of scheduled insight runs; 0 turns
	// the schedule off (runs can still be started through the API).
	InsightsEvery time.Duration
	Insights      insights.Config
	// IdentityRules are the identity-resolution rules at start (nil: the
	// rules last set through the admin API, else the defaults).
	IdentityRules *identity.Rules
	// MatchEvery is the interval of scheduled probabilistic matching runs;
	// 0 (the default) runs them only on request.
	MatchEvery time.Duration
	// Match is the probabilistic matching configuration (nil: the
	// defaults).
	Match *profilematch.Config
	// DMPTTL is how long third-party audiences last when their file gives
	// no expiry; MinSeedSize is the smallest look-alike seed file exported.
	DMPTTL      time.Duration
	MinSeedSize int
	// Retention is the retention policy; RetentionEvery the interval of
	// its sweeps.
	Retention      privacy.Policy
	RetentionEvery time.Duration
}

// Server is a running Kith: store, group committer, indexer and HTTP API.
// Tests start it on 127.0.0.1:0 exactly as `kith serve` does.
type Server struct {
	Config ServeConfig
	Logger *slog.Logger

	store     kith.Store
	committer *collect.Committer
	indexer   *pipeline.Indexer
	insights  *insights.Runner
	matcher   *profilematch.Job
	audiences *audience.Engine
	privacy   *privacy.Service
	retention *privacy.Sweeper
	// rules are the identity rules in force: the one source the indexer,
	// the audience engine, the privacy gate, the API, the console and DMP
	// linking read, which PUT /v1/identity/rules replaces for all of them.
	rules *identity.Current
	// destinations delivers events and audience changes to the tools
	// that act on them (package activation).
	destinations *activation.Engine
	api          *httpapi.Server
	ln           net.Listener
	http         *http.Server
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	closeOnce    sync.Once
	// loading says what the server is still loading (kith demo); /healthz
	// answers 503 while it is not empty.
	loading atomic.Pointer[string]
}

// SetLoading sets what /healthz reports as still loading; "" means ready.
func (s *Server) SetLoading(what string) { s.loading.Store(&what) }

func (s *Server) loadingWhat() string {
	if p := s.loading.Load(); p != nil {
		return *p
	}
	return ""
}

// ParseServeFlags reads `kith serve` flags and the KITH_* environment.
func ParseServeFlags(args []string, stderr io.Writer) (ServeConfig, error) {
	fs := flag.NewFlagSet("kith serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	finish := serveFlags(fs)
	if err := fs.Parse(args); err != nil {
		return ServeConfig{}, err
	}
	return finish()
}

// serveFlags defines the flags of `kith serve` on fs (kith demo takes them
// too) and returns the function that builds the configuration once fs is
// parsed.
func serveFlags(fs *flag.FlagSet) func() (ServeConfig, error) {
	def := collect.DefaultLimits()
	c := ServeConfig{}
	var env envValues
	fs.StringVar(&c.DataDir, "data", envOr("KITH_DATA", "./kith-data"), "data directory of the embedded store (env KITH_DATA)")
	fs.StringVar(&c.Addr, "addr", envOr("KITH_ADDR", "127.0.0.1:8080"), "listen address (env KITH_ADDR)")
	fs.StringVar(&c.PostgresURL, "postgres", os.Getenv("KITH_POSTGRES_URL"), "PostgreSQL URL; when set, used instead of the embedded store (env KITH_POSTGRES_URL)")
	fs.DurationVar(&c.DedupWindow, "dedup-window", env.duration("KITH_DEDUP_WINDOW", 7*24*time.Hour), "how long messageIds are remembered for deduplication (env KITH_DEDUP_WINDOW)")
	fs.IntVar(&c.Limits.MaxEventBytes, "max-event-bytes", env.int("KITH_MAX_EVENT_BYTES", def.MaxEventBytes), "largest message accepted (env KITH_MAX_EVENT_BYTES)")
	fs.IntVar(&c.Limits.MaxRequestBytes, "max-request-bytes", env.int("KITH_MAX_REQUEST_BYTES", def.MaxRequestBytes), "largest request body accepted, after decompression (env KITH_MAX_REQUEST_BYTES)")
	var backlog int
	fs.IntVar(&backlog, "max-backlog", env.int("KITH_MAX_BACKLOG", 2_000_000), "unprocessed events beyond which collection and imports answer 429; the events a rebuild of the derived state re-applies do not count (env KITH_MAX_BACKLOG)")
	fs.IntVar(&c.BatchSize, "index-batch", env.int("KITH_INDEX_BATCH", 20000), "events the indexer applies per transaction (env KITH_INDEX_BATCH)")
	fs.DurationVar(&c.InsightsEvery, "insights-every", env.duration("KITH_INSIGHTS_EVERY", 24*time.Hour), "interval of scheduled insight runs, 0 = off (env KITH_INSIGHTS_EVERY)")
	c.Insights = insights.DefaultConfig()
	fs.StringVar(&c.Insights.Model, "insights-model", envOr("KITH_INSIGHTS_MODEL", c.Insights.Model), "purchase model: bgnbd or paretonbd (env KITH_INSIGHTS_MODEL)")
	fs.DurationVar(&c.MatchEvery, "match-every", env.duration("KITH_MATCH_EVERY", 0), "interval of scheduled probabilistic matching runs, 0 = only on request (env KITH_MATCH_EVERY)")
	matchFile := fs.String("match-config", os.Getenv("KITH_MATCH_CONFIG"), "JSON file of the probabilistic matching configuration: fields from traits, comparisons, blocking rules, autoMerge and review thresholds (env KITH_MATCH_CONFIG)")
	rulesFile := fs.String("identity-rules", os.Getenv("KITH_IDENTITY_RULES"), "JSON file of identity rules: identifier types, sources, normalisation, limits, priorities, never-merge, blocked values (env KITH_IDENTITY_RULES); see GET /v1/identity/rules for the defaults")
	fs.DurationVar(&c.DMPTTL, "dmp-ttl", env.duration("KITH_DMP_TTL", 90*24*time.Hour), "how long third-party (DMP) audiences last when their file gives no expiry (env KITH_DMP_TTL)")
	fs.IntVar(&c.MinSeedSize, "min-seed-size", env.int("KITH_MIN_SEED_SIZE", 100), "smallest look-alike seed file exported (env KITH_MIN_SEED_SIZE)")
	retentionFile := fs.String("retention", os.Getenv("KITH_RETENTION"), `JSON file of the retention policy: {"default":"0","sources":{"webshop":"25mo"},"events":{"page":"13mo","Order Completed":"7y"},"profileInactivity":"3y","thirdParty":"90d"} (env KITH_RETENTION); without it nothing expires but third-party audiences`)
	fs.DurationVar(&c.RetentionEvery, "retention-every", env.duration("KITH_RETENTION_EVERY", time.Hour), "interval of retention sweeps (env KITH_RETENTION_EVERY)")
	rfmRules := fs.String("rfm-segments", os.Getenv("KITH_RFM_SEGMENTS"), `JSON file of RFM segments, first match wins: [{"name":"Champions","r":[5,5],"f":[5,5],"m":[5,5]},...] (env KITH_RFM_SEGMENTS)`)
	return func() (ServeConfig, error) {
		if err := env.err(fs); err != nil {
			return c, err
		}
		if *matchFile != "" {
			m, err := profilematch.LoadConfig(*matchFile)
			if err != nil {
				return c, err
			}
			c.Match = &m
		}
		if *rulesFile != "" {
			r, err := identity.LoadRules(*rulesFile)
			if err != nil {
				return c, err
			}
			c.IdentityRules = r
		}
		if *retentionFile != "" {
			p, err := privacy.LoadPolicy(*retentionFile)
			if err != nil {
				return c, err
			}
			c.Retention = p
			if p.ThirdParty > 0 {
				c.DMPTTL = time.Duration(p.ThirdParty)
			}
		}
		if *rfmRules != "" {
			b, err := os.ReadFile(*rfmRules)
			if err != nil {
				return c, fmt.Errorf("RFM segments: %w", err)
			}
			if err := json.Unmarshal(b, &c.Insights.RFMRules); err != nil {
				return c, fmt.Errorf("RFM segments in %s: %w", *rfmRules, err)
			}
		}
		if err := c.Insights.Validate(); err != nil {
			return c, err
		}
		c.Limits.MaxMessageIDLen = def.MaxMessageIDLen
		c.MaxBacklog = int64(backlog)
		c.AdminToken = os.Getenv("KITH_ADMIN_TOKEN")
		return c, nil
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envValues reads the KITH_* variables that give flags their defaults and
// remembers each value that does not parse, so that a bad one refuses to
// start, naming the variable, instead of silently becoming the default
// (KITH_MAX_BACKLOG=2m is not 2,000,000) — unless its flag is given too.
// KITH_MAX_BACKLOG is the default of --max-backlog.
type envValues struct{ errs map[string]error }

func (e *envValues) bad(name string, err error) {
	if e.errs == nil {
		e.errs = map[string]error{}
	}
	e.errs[name] = err
}

func (e *envValues) int(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.bad(name, fmt.Errorf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

func (e *envValues) duration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.bad(name, fmt.Errorf("%s=%q is not a duration (such as 90s, 15m, 24h)", name, v))
		return def
	}
	return d
}

// err reports every bad value whose flag fs was not given, or nil.
func (e *envValues) err(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(e.errs)) {
		flagName := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "KITH_")), "_", "-")
		if !given[flagName] {
			errs = append(errs, e.errs[name])
		}
	}
	return errors.Join(errs...)
}

// Open opens the store, provisions the admin token, and starts the
// indexer, the committer and the HTTP listener.
func (s *Server) Open(ctx context.Context) error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var err error
	setProcs()
	if s.Config.PostgresURL != "" {
		s.store, err = postgres.Open(ctx, s.Config.PostgresURL)
	} else {
		s.store, err = sqlite.Open(ctx, s.Config.DataDir, sqlite.Options{})
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if err := s.store.PruneDedup(ctx, time.Now().Add(-s.Config.DedupWindow)); err != nil {
		s.store.Close()
		return err
	}
	if s.Config.AdminToken != "" {
		if err := admin.ProvisionToken(ctx, s.store, s.Config.AdminToken, time.Now()); err != nil {
			s.store.Close()
			return err
		}
	}
	secret, err := s.store.Secret(ctx)
	if err != nil {
		s.store.Close()
		return err
	}
	// Identity rules: a file given at start wins; else the rules last set
	// through the admin API; else the defaults.
	if s.Config.IdentityRules == nil {
		raw, err := s.store.IdentityRules(ctx)
		if err != nil {
			s.store.Close()
			return err
		}
		if raw != nil {
			if s.Config.IdentityRules, err = identity.ParseRules(raw); err != nil {
				s.store.Close()
				return fmt.Errorf("stored identity rules: %w", err)
			}
		}
	}
	s.rules = identity.NewCurrent(s.Config.IdentityRules)
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.audiences = audience.NewEngine(s.store, audience.Config{Secret: secret, Rules: s.rules.Load, Logger: s.Logger})
	if err := s.audiences.Start(ctx); err != nil {
		cancel()
		s.store.Close()
		return err
	}
	// Destinations are woken when the indexer has applied a batch (new
	// events to send) instead of finding it at their next poll.
	applied := make(chan struct{}, 1)
	s.indexer = pipeline.New(s.store, secret, pipeline.Config{BatchSize: s.Config.BatchSize, Logger: s.Logger, Rules: s.rules.Load,
		Observer: wakingObserver{s.audiences, applied}})
	s.committer = collect.NewCommitter(s.store, 4096, 20000, s.indexer.Notify)
	if s.Config.Insights.Model == "" { // a ServeConfig built without ParseServeFlags
		s.Config.Insights = insights.DefaultConfig()
	}
	s.insights = &insights.Runner{Store: predictionFeed{s.store, s.audiences}, Config: s.Config.Insights, Logger: s.Logger, Context: runCtx}
	matchCfg := profilematch.DefaultConfig()
	if s.Config.Match != nil {
		matchCfg = *s.Config.Match
	}
	s.matcher = &profilematch.Job{Store: s.store, Linker: s.indexer, Config: matchCfg, Logger: s.Logger}
	// Destinations follow the indexer: a worker reads no event the
	// indexer has not applied, so each has its profile and consent.
	s.destinations, err = activation.New(activation.Config{
		Store:       s.store,
		Attribution: pipeline.NewAttribution(s.rules.Load, identity.NewKeyer(secret), s.Logger, "destinations"),
		Cursor:      s.indexer.Cursor,
		TrackTraits: s.audiences.TrackTraits,
		Logger:      s.Logger,
	})
	if err != nil {
		cancel()
		s.store.Close()
		return fmt.Errorf("destinations: %w", err)
	}
	s.privacy = &privacy.Service{Store: s.store, Indexer: s.indexer, Engine: s.audiences, Destinations: s.destinations,
		Secret: secret, Rules: s.rules.Load, Logger: s.Logger}
	if err := s.privacy.Start(runCtx); err != nil {
		cancel()
		s.store.Close()
		return err
	}
	s.committer.SetGate(s.privacy.Gate)
	if err := s.destinations.Start(runCtx); err != nil {
		cancel()
		s.store.Close()
		return fmt.Errorf("destinations: %w", err)
	}
	s.retention = &privacy.Sweeper{Store: s.store, Service: s.privacy, Policy: s.Config.Retention, Logger: s.Logger}
	s.wg.Add(8)
	go func() {
		defer s.wg.Done()
		s.wakeDestinations(runCtx, applied)
	}()
	go func() {
		defer s.wg.Done()
		// What the indexer applied while the engine was not running is
		// read from the log first; then the engine follows the indexer.
		if err := s.audiences.CatchUp(runCtx); err != nil && runCtx.Err() == nil {
			s.Logger.Error("audience engine could not catch up; it retries as it runs", "err", err)
		}
		if err := s.audiences.Run(runCtx); err != nil {
			s.Logger.Error("audience engine stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.indexer.WatchHead(runCtx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.indexer.Run(runCtx); err != nil {
			s.Logger.Error("indexer stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.pruneDedup(runCtx)
	}()
	go func() {
		defer s.wg.Done()
		s.insights.Schedule(runCtx, s.Config.InsightsEvery)
	}()
	go func() {
		defer s.wg.Done()
		s.matcher.Schedule(runCtx, s.Config.MatchEvery, time.Minute)
	}()
	go func() {
		defer s.wg.Done()
		if s.Config.RetentionEvery > 0 {
			s.retention.Run(runCtx, s.Config.RetentionEvery)
		}
	}()

	s.api = httpapi.New(s.store, s.committer, s.indexer, httpapi.Config{
		Limits: s.Config.Limits, MaxBacklog: s.Config.MaxBacklog, Logger: s.Logger,
		Insights: s.insights, InsightConfig: s.Config.Insights, IdentityRules: s.rules,
		Unmerger: s.indexer, Matcher: s.matcher, Audiences: s.audiences,
		Loading: s.loadingWhat, DMPTTL: s.Config.DMPTTL, MinSeedSize: s.Config.MinSeedSize, Eraser: s.privacy,
		Retention: s.retention, RetentionPolicy: s.Config.Retention, Workers: []httpapi.Worker{s.indexer, s.audiences},
		Destinations: s.destinations,
	})
	con, err := console.New(console.Config{Store: s.store, Audiences: s.audiences, Eraser: s.privacy, Unmerger: s.indexer, Rules: s.rules.Load, Secret: secret, Logger: s.Logger,
		Audit: s.api.Audit, AuditSync: s.api.SyncAudit, Destinations: s.destinations})
	if err != nil {
		s.Close()
		return fmt.Errorf("console: %w", err)
	}
	mux := http.NewServeMux()
	con.Register(mux)
	mux.Handle("/", s.api)
	s.ln, err = net.Listen("tcp", s.Config.Addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("listen on %s: %w", s.Config.Addr, err)
	}
	// ReadTimeout bounds how late a request can be committed after it was
	// stamped (the dedup rebuild relies on it) and stops slow uploads.
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server stopped", "err", err)
		}
	}()
	storeKind := "embedded:" + s.Config.DataDir
	if s.Config.PostgresURL != "" {
		storeKind = "postgres"
	}
	s.Logger.Info("kith serving", "addr", s.Addr(), "store", storeKind)
	return nil
}

// predictionFeed hands what insight runs predict to the audience engine
// once it is stored, so audiences on predicted traits follow each run.
type predictionFeed struct {
	kith.Store
	eng *audience.Engine
}

func (p predictionFeed) WriteInsights(ctx context.Context, runID string, at time.Time, ps []kith.ProfileInsights) error {
	if err := p.Store.WriteInsights(ctx, runID, at, ps); err != nil {
		return err
	}
	p.eng.Predicted(ps)
	return nil
}

// wakingObserver is the indexer's observer: the audience engine, and a
// signal on applied (never blocking the indexer) for the destinations.
type wakingObserver struct {
	pipeline.Observer
	applied chan<- struct{}
}

func (o wakingObserver) Applied(b kith.IndexBatch, msgs []kith.Message) {
	o.Observer.Applied(b, msgs)
	select {
	case o.applied <- struct{}{}:
	default:
	}
}

// wakeDestinations wakes the destinations' workers (activation.Engine's
// Notify) whenever the indexer has applied a batch or the audience engine
// has committed the memberships of one, so that events and audience
// changes go out at once rather than at the workers' next poll (every
// 250 ms), until ctx ends.
func (s *Server) wakeDestinations(ctx context.Context, applied <-chan struct{}) {
	changed := make(chan struct{}, 1)
	go func() {
		for {
			if err := s.audiences.WaitFor(ctx, s.audiences.Cursor()+1); err != nil {
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-applied:
		case <-changed:
		}
		s.destinations.Notify()
	}
}

// setProcs sets GOMAXPROCS to twice the cores (at least 8) unless the
// environment sets it. The indexer runs long CPU bursts (SQLite in this
// process, or pgx decoding on PostgreSQL); with more Ps than cores the OS
// time-slices them against request goroutines instead of Go's 10 ms
// preemption, which cut profile-read p99 from ~27 ms to ~9 ms on a 2-core
// machine (BENCHMARKS.md).
func setProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(2*runtime.NumCPU(), 8))
	}
}

// pruneDedup forgets messageIds older than the window, and third-party
// audiences past their expiry, hourly.
func (s *Server) pruneDedup(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.store.PruneDedup(ctx, time.Now().Add(-s.Config.DedupWindow)); err != nil {
				s.Logger.Error("prune dedup window", "err", err)
			}
			if n, err := s.store.PruneDMPAudiences(ctx, time.Now()); err != nil {
				s.Logger.Error("prune expired third-party audiences", "err", err)
			} else if n > 0 {
				s.Logger.Info("pruned expired third-party audiences", "entries", n)
			}
		}
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops taking requests, commits what is queued, stops the indexer
// (a batch in flight is abandoned and replayed at the next start) and
// closes the store.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		}
		if s.api != nil {
			s.api.Close() // the audit entries still queued
		}
		if s.committer != nil {
			s.committer.Close()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if s.destinations != nil {
			s.destinations.Close() // attempts in flight are made again at the next start, with the same ids
		}
		if s.privacy != nil {
			s.privacy.Wait()
		}
		if s.insights != nil {
			s.insights.Wait()
		}
		if s.store != nil {
			err = s.store.Close()
		}
	})
	return err
}
