// Package console is Kith's web console: the central customer view in a
// browser, served next to the API. Pages are rendered on the server with
// html/template from embedded templates and assets (no CDN, no build
// step, usable without JavaScript). Signing in takes an admin token; the
// session lives in an HttpOnly, SameSite=Strict cookie, every form carries
// a CSRF token, and what the token's scopes do not allow is neither shown
// nor reachable.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/privacy"
	"github.com/kithcdp/kith/profile"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Audiences is what the console reads from the audience engine.
type Audiences interface {
	Definitions(kind string) []kith.Definition
	DryRun(ctx context.Context, text string, cond json.RawMessage, sample int) (int64, []string, error)
	ComputedTraits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	ProfileMemberships(ctx context.Context, canonicalID string) ([]kith.Member, error)
	// Reads and SavedReads tell what a definition reads, for
	// privacy.CheckReads and privacy.MaskTraits.
	Reads(d kith.Definition) ([]audience.Read, error)
	SavedReads(kind, key string) ([]audience.Read, bool)
}

// Eraser takes erasure requests and reads them with how each
// destination's deletion is doing (privacy.Service).
type Eraser interface {
	Request(ctx context.Context, ref string, suppress bool, by string) (kith.Erasure, error)
	Erasures(ctx context.Context, limit int) ([]kith.Erasure, error)
}

// Unmerger undoes a merge (the indexer).
type Unmerger interface {
	Unmerge(ctx context.Context, u pipeline.Unmerge) (pipeline.UnmergeResult, error)
}

// Config is what the console needs.
type Config struct {
	Store     kith.Store
	Audiences Audiences // nil: no audience pages
	Eraser    Eraser    // nil: no erase action
	Unmerger  Unmerger  // nil: no unmerge action
	// Destinations is the delivery engine; nil: no destinations page.
	Destinations Destinations
	Rules        func() *identity.Rules
	Secret       []byte
	Now          func() time.Time
	Logger       *slog.Logger
	// SessionTTL is how long a session lasts without use (default 8h);
	// a session never lasts longer than a day.
	SessionTTL time.Duration
	// Audit, if set, records what a signed-in token does in the console,
	// in the API's audit log.
	Audit func(e kith.AuditEntry)
	// AuditSync, if set, waits until every audit entry recorded so far is
	// stored (entries are written in batches off the request path), so the
	// privacy page shows what was just done.
	AuditSync func()
}

// Console serves the pages.
type Console struct {
	cfg   Config
	tmpl  map[string]*template.Template
	keyer identity.Keyer
	// profiles resolves references and reads profiles, as the API does.
	profiles *profile.Service

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one signed-in browser.
type session struct {
	tok     kith.Token
	csrf    string
	seen    time.Time
	started time.Time
	checked time.Time // when the token was last found valid
}

// maxSessionAge bounds a session whatever its use; maxSessionsPerToken
// bounds how many one token holds (the oldest goes first).
const (
	maxSessionAge       = 24 * time.Hour
	maxSessionsPerToken = 20
)

// New parses the templates.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Rules == nil {
		r := identity.DefaultRules()
		cfg.Rules = func() *identity.Rules { return r }
	}
	c := &Console{cfg: cfg, keyer: identity.NewKeyer(cfg.Secret), sessions: map[string]*session{}, tmpl: map[string]*template.Template{},
		profiles: profile.New(profile.Config{Store: cfg.Store, Audiences: cfg.Audiences, Rules: cfg.Rules, Now: cfg.Now})}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := p[len("templates/") : len(p)-len(".html")]
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", p)
		if err != nil {
			return nil, err
		}
		c.tmpl[name] = t
	}
	return c, nil
}

// Register mounts the console's routes on mux: "/" and the pages below
// it; the API keeps /v1/.
func (c *Console) Register(mux *http.ServeMux) {
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /{$}", c.page(kith.ScopeStatsRead, c.overview, true))
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.action("", c.logout))
	mux.HandleFunc("GET /customers", c.page(kith.ScopeProfilesRead, c.search, false))
	mux.HandleFunc("GET /customers/{ref}", c.page(kith.ScopeProfilesRead, c.customer, false))
	mux.HandleFunc("GET /customers/{ref}/export", c.page(kith.ScopePrivacyWrite, c.export, false))
	mux.HandleFunc("POST /customers/{ref}/erase", c.action(kith.ScopePrivacyWrite, c.erase))
	mux.HandleFunc("GET /audiences", c.page(kith.ScopeProfilesRead, c.audiences, false))
	mux.HandleFunc("GET /audiences/{key}", c.page(kith.ScopeProfilesRead, c.audience, false))
	mux.HandleFunc("POST /customers/{ref}/unmerge", c.action(kith.ScopeProfilesWrite, c.unmerge))
	mux.HandleFunc("POST /audiences/dry-run", c.action(kith.ScopeProfilesRead, c.dryRun))
	mux.HandleFunc("POST /audiences/validate", c.action(kith.ScopeProfilesRead, c.validate))
	mux.HandleFunc("GET /privacy", c.page(kith.ScopePrivacyWrite, c.privacy, false))
	mux.HandleFunc("GET /insights", c.page(kith.ScopeInsightsRead, c.insightsPage, false))
	if c.destinationsEnabled() {
		// The scopes of the destinations API: the settings and the
		// accounting are sources:read, acting on a destination is
		// sources:write (its deliveries, messages about people, also
		// take profiles:read: see destination).
		mux.HandleFunc("GET /destinations", c.page(kith.ScopeSourcesRead, c.destinations, false))
		mux.HandleFunc("GET /destinations/{name}", c.page(kith.ScopeSourcesRead, c.destination, false))
		mux.HandleFunc("POST /destinations/{name}/pause", c.action(kith.ScopeSourcesWrite, c.setPaused(true)))
		mux.HandleFunc("POST /destinations/{name}/resume", c.action(kith.ScopeSourcesWrite, c.setPaused(false)))
		mux.HandleFunc("POST /destinations/{name}/replay", c.action(kith.ScopeSourcesWrite, c.replay))
	}
}

const cookieName = "kith_session"

// sessionOf returns the request's live session, if any. A session ends
// when its token is revoked (checked every few seconds, so a revocation
// takes effect here as on the API) and takes on changed scopes.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	s, ok := c.sessions[ck.Value]
	now := c.cfg.Now()
	if ok && (now.Sub(s.seen) > c.cfg.SessionTTL || now.Sub(s.started) > maxSessionAge) {
		delete(c.sessions, ck.Value)
		ok = false
	}
	if !ok {
		c.mu.Unlock()
		return nil
	}
	s.seen = now
	recheck := now.Sub(s.checked) > 5*time.Second
	hash := s.tok.Hash
	c.mu.Unlock()
	if recheck {
		tok, err := c.cfg.Store.TokenByHash(r.Context(), hash)
		c.mu.Lock()
		defer c.mu.Unlock()
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			delete(c.sessions, ck.Value)
			return nil
		}
		if err == nil {
			s.tok, s.checked = tok, now
		}
	}
	return s
}

// sameOrigin refuses a state-changing request another site sent (a
// forged sign-in or form): browsers say where a request comes from.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

// login serves POST /login: the form's token becomes a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "sign in from the console's own page", http.StatusForbidden)
		return
	}
	token := r.PostFormValue("token")
	sum := sha256.Sum256([]byte(token))
	tok, err := c.cfg.Store.TokenByHash(r.Context(), sum[:])
	if token == "" || kith.ErrorCode(err) == kith.ENOTFOUND {
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, r, nil, "login", map[string]any{"Error": "That token is not valid."})
		return
	} else if err != nil {
		// The store failed: that says nothing of the token (the API
		// answers the same way).
		c.fail(w, r, nil, err)
		return
	}
	id := kith.NewSecret("")
	now := c.cfg.Now()
	c.mu.Lock()
	var mine []string              // this token's sessions
	for k, s := range c.sessions { // forget expired sessions
		if now.Sub(s.seen) > c.cfg.SessionTTL || now.Sub(s.started) > maxSessionAge {
			delete(c.sessions, k)
		} else if s.tok.ID == tok.ID {
			mine = append(mine, k)
		}
	}
	for len(mine) >= maxSessionsPerToken { // the oldest goes
		oldest := 0
		for i, k := range mine {
			if c.sessions[k].started.Before(c.sessions[mine[oldest]].started) {
				oldest = i
			}
		}
		delete(c.sessions, mine[oldest])
		mine = append(mine[:oldest], mine[oldest+1:]...)
	}
	c.sessions[id] = &session{tok: tok, csrf: kith.NewSecret(""), seen: now, started: now, checked: now}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(c.cfg.SessionTTL.Seconds())})
	home := "/"
	if !tok.HasScope(kith.ScopeStatsRead) {
		home = "/customers"
	}
	c.audit(r, tok, "POST /login", "", http.StatusSeeOther)
	http.Redirect(w, r, home, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// page wraps a GET handler: without a session it shows the sign-in page
// (loginAtRoot) or redirects to it; without the scope it answers 403.
func (c *Console) page(scope string, h func(http.ResponseWriter, *http.Request, *session), loginAtRoot bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			if loginAtRoot {
				c.render(w, r, nil, "login", nil)
				return
			}
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if scope != "" && !s.tok.HasScope(scope) {
			w.WriteHeader(http.StatusForbidden)
			c.render(w, r, s, "error", map[string]any{"Message": "Your token does not allow this page (it needs the " + scope + " scope)."})
			c.audit(r, s.tok, r.Pattern, r.PathValue("ref"), http.StatusForbidden)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if status, msg := requestTextProblem(r); status != 0 {
			sw.WriteHeader(status)
			c.render(sw, r, s, "error", map[string]any{"Message": msg})
		} else {
			h(sw, r, s)
		}
		c.audit(r, s.tok, r.Pattern, r.PathValue("ref"), sw.status)
	}
}

// requestTextProblem refuses a request whose path, query or form holds
// text no store can hold (kith.TextProblem) before a page looks anything
// up with it: a path value names nothing (404), a parameter is invalid
// (400). It returns 0 when the request is fine.
func requestTextProblem(r *http.Request) (int, string) {
	for _, name := range []string{"ref", "key", "name"} {
		if p := kith.TextProblem(r.PathValue(name)); p != "" {
			return http.StatusNotFound, "Nothing has that " + name + ": it " + p + "."
		}
	}
	if r.Method == http.MethodPost {
		_ = r.ParseForm() // the action read its CSRF field already
	}
	for _, vals := range []url.Values{r.URL.Query(), r.PostForm} {
		for k, vs := range vals {
			for _, v := range append(vs, k) {
				if p := kith.TextProblem(v); p != "" {
					return http.StatusBadRequest, "The field " + kith.QuoteText(k) + " " + p + "."
				}
			}
		}
	}
	return 0, ""
}

// action wraps a POST handler: a session, the scope and the form's CSRF
// token are required.
func (c *Console) action(scope string, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
			http.Error(w, "the form's CSRF token is missing or wrong; reload the page", http.StatusForbidden)
			return
		}
		if scope != "" && !s.tok.HasScope(scope) {
			http.Error(w, "your token does not allow this ("+scope+")", http.StatusForbidden)
			c.audit(r, s.tok, r.Pattern, r.PathValue("ref"), http.StatusForbidden)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if status, msg := requestTextProblem(r); status != 0 {
			http.Error(sw, msg, status)
		} else {
			h(sw, r, s)
		}
		c.audit(r, s.tok, r.Pattern, r.PathValue("ref"), sw.status)
	}
}

// statusWriter remembers the status a page answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// audit records a console request as the API records its own: the token,
// the route (prefixed "console"), the customer reference (an identifier
// as its type and keyed hash), the outcome.
func (c *Console) audit(r *http.Request, tok kith.Token, pattern, ref string, status int) {
	if c.cfg.Audit == nil || pattern == "GET /assets/" {
		return
	}
	target := ""
	if ref != "" {
		target = "ref=" + privacy.AuditRef(c.cfg.Rules(), c.keyer, ref)
	} else if name := r.PathValue("name"); name != "" {
		target = "name=" + name // a destination's
	}
	c.cfg.Audit(kith.AuditEntry{At: c.cfg.Now().UTC(), TokenID: tok.ID, TokenName: tok.Name, Action: "console " + pattern, Target: target, Status: status, Outcome: kith.AuditOutcome(status)})
}

// render executes a page inside the layout.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, name string, data map[string]any) {
	t, ok := c.tmpl[name]
	if !ok {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	if data == nil {
		data = map[string]any{}
	}
	data["Page"] = name
	if s != nil {
		data["Session"] = map[string]any{"Name": s.tok.Name, "CSRF": s.csrf}
		data["Can"] = func(scope string) bool { return s.tok.HasScope(scope) }
		data["HasDestinations"] = c.destinationsEnabled()
	} else {
		data["Can"] = func(string) bool { return false }
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' "+chartStyleHash+"; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if err := t.Execute(w, data); err != nil {
		c.cfg.Logger.Error("console: render", "page", name, "err", err)
	}
}
