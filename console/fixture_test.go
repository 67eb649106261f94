package console_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/console"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// quiet is the logger of the fixture's servers: the tests provoke the
// errors they would log.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a real embedded store whose log the indexer and the audience
// engine have applied, for a console (and an API beside it) to read.
type fixture struct {
	t      testing.TB
	db     *sqlite.DB
	secret []byte
	eng    *audience.Engine
	now    time.Time
}

// newFixture appends events (Segment messages as JSON, a minute apart and
// ending an hour before now) to a fresh store, saves the definitions and
// applies everything.
func newFixture(t testing.TB, defs []kith.Definition, events ...string) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	secret, err := db.Secret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, secret: secret, now: time.Now().UTC().Truncate(time.Second)}
	f.eng = audience.NewEngine(db, audience.Config{Secret: secret, FlushEvery: -1, Now: func() time.Time { return f.now }})
	ix := pipeline.New(db, secret, pipeline.Config{Observer: f.eng})
	var msgs []kith.Message
	for i, raw := range events {
		var m struct{ Type, Event, UserID, AnonymousID string }
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		at := f.now.Add(time.Duration(i-len(events)-60) * time.Minute)
		msgs = append(msgs, kith.Message{SourceID: "web", MessageID: "m" + strconv.Itoa(i), Type: m.Type, Event: m.Event, UserID: m.UserID,
			AnonymousID: m.AnonymousID, Timestamp: at, ReceivedAt: at, Raw: []byte(raw)})
	}
	if len(msgs) > 0 {
		if _, err := db.Append(ctx, kith.AppendBatch{Events: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range defs {
		if _, err := f.eng.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for {
		n, err := ix.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		worked, err := f.eng.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && !worked {
			return f
		}
	}
}

// console serves a console built from cfg over the fixture's store
// (unless cfg names another, such as a wrapper of it), with the fixture's
// secret and clock.
func (f *fixture) console(cfg console.Config) *http.ServeMux {
	f.t.Helper()
	if cfg.Store == nil {
		cfg.Store = f.db
	}
	cfg.Secret, cfg.Now, cfg.Logger = f.secret, func() time.Time { return f.now }, quiet
	c, err := console.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Register(mux)
	return mux
}

// token creates an admin token with the scopes and returns its secret.
func (f *fixture) token(scopes ...string) string {
	f.t.Helper()
	_, tok, err := admin.CreateToken(context.Background(), f.db, strings.NewReplacer(":", "-", "*", "all").Replace(strings.Join(scopes, " ")), scopes, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// signIn signs in to the console on mux with a new token of the scopes
// and returns a browser: a function that sends a request with the session
// cookie.
func (f *fixture) signIn(mux *http.ServeMux, scopes ...string) func(method, path string, form url.Values) *httptest.ResponseRecorder {
	f.t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {f.token(scopes...)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		f.t.Fatalf("sign in: %d %s", rec.Code, rec.Body)
	}
	cookie := strings.Split(rec.Header().Get("Set-Cookie"), ";")[0]
	return func(method, path string, form url.Values) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", cookie)
		mux.ServeHTTP(rec, req)
		return rec
	}
}
