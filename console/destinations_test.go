package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/console"
	"github.com/kithcdp/kith/httpapi"
)

// fakeEngine stands in for the delivery engine: it reports the states it
// is given, and pauses and replays in the store as the engine would.
type fakeEngine struct {
	st       kith.Store
	states   map[string]activation.State
	paused   []string
	replayed []string
}

func (e *fakeEngine) State(id string) (activation.State, bool) {
	s, ok := e.states[id]
	return s, ok
}

func (e *fakeEngine) SetPaused(ctx context.Context, name string, paused bool) (kith.Destination, error) {
	d, err := e.st.Destination(ctx, name)
	if err != nil {
		return d, err
	}
	d.Paused = paused
	e.paused = append(e.paused, fmt.Sprintf("%s %v", name, paused))
	return d, e.st.UpdateDestination(ctx, d)
}

func (e *fakeEngine) Replay(ctx context.Context, id string, ids []string) (int, error) {
	e.replayed = append(e.replayed, id)
	return 2, nil
}

func (e *fakeEngine) Changed(ctx context.Context, id string) error { return nil }

func (e *fakeEngine) ReplayLog(ctx context.Context, id string, from, to time.Time) (activation.Span, error) {
	return activation.Span{}, fmt.Errorf("not used by the console")
}

// The secrets of the fixture's destinations: no page may show them.
const (
	hookSecret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
	hookHeader = "Bearer hunter2-never-shown"
	segmentKey = "wk_never_shown_either"
)

// destinations adds to the person fixture two destinations: crm-hook, a
// webhook subscribed to every event and the buyers audience under
// Advertising consent, started two events into the log, with counts,
// one retrying and two dead-lettered deliveries (one about Ada, with her
// e-mail address), and a worker failing with a 500; and warehouse, a
// paused segment forwarder of identify calls. It returns the fake engine
// that reports crm-hook's worker.
func destinations(t *testing.T, f *fixture) *fakeEngine {
	t.Helper()
	ctx := context.Background()
	hook := kith.Destination{ID: "dst_hook", Name: "crm-hook", Type: kith.DestinationWebhook,
		Config: json.RawMessage(`{"url":"https://hooks.example.com/kith","secret":"` + hookSecret + `","headers":{"Authorization":"` + hookHeader + `"}}`),
		Events: &kith.EventFilter{}, Audiences: []string{"buyers"}, Consent: []string{"Advertising"}, Traits: []string{"ltv_365d"},
		Mapping: &kith.Mapping{Rename: map[string]string{"userId": "customer_id"}}, CreatedAt: f.now.Add(-2 * time.Hour)}
	wh := kith.Destination{ID: "dst_wh", Name: "warehouse", Type: kith.DestinationSegment,
		Config: json.RawMessage(`{"endpoint":"https://collect.example.org","writeKey":"` + segmentKey + `"}`),
		Events: &kith.EventFilter{Types: []string{"identify"}}, Paused: true, CreatedAt: f.now.Add(-time.Hour)}
	for _, d := range []kith.Destination{hook, wh} {
		if err := activation.Validate(d); err != nil {
			t.Fatal(err)
		}
		if err := f.db.CreateDestination(ctx, d, kith.DestinationProgress{LogSeq: 2}); err != nil {
			t.Fatal(err)
		}
	}
	first := f.now.Add(-30 * time.Minute)
	err := f.db.AdvanceDestination(ctx, hook.ID, kith.DestinationUpdate{
		Progress:  kith.DestinationProgress{LogSeq: 2},
		Delivered: 7, Filtered: map[string]int64{"consent": 1, "subscription": 2},
		Put: []kith.Delivery{
			{ID: "dlv_dst_hook_e1", Key: "p_ada", Seq: 1, Kind: "event", Attempts: 3, FirstAt: first, NextAt: f.now.Add(time.Minute), LastStatus: 503,
				LastError: "HTTP 503 Service Unavailable: try later", Body: json.RawMessage(`{"type":"page","name":"Home","anonymousId":"a1"}`)},
			{ID: "dlv_dst_hook_e2", Key: "p_ada", Seq: 2, Kind: "event", Attempts: 1, FirstAt: first, NextAt: first, LastStatus: 400, Dead: true,
				LastError: "HTTP 400 Bad Request: unknown field traits", Body: json.RawMessage(`{"type":"identify","userId":"u1","traits":{"email":"ada@example.com"}}`)},
			{ID: "dlv_dst_hook_e3", Key: "p_bob", Seq: 3, Kind: "event", Attempts: 1, FirstAt: first, NextAt: first, LastStatus: 410, Dead: true,
				LastError: "HTTP 410 Gone", Body: json.RawMessage(`{"type":"track","event":"Order Completed","userId":"u2"}`)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	failedAt := f.now.Add(-10 * time.Second)
	return &fakeEngine{st: f.db, states: map[string]activation.State{hook.ID: {
		ID: hook.ID, Name: hook.Name, Running: true, Progress: kith.DestinationProgress{LogSeq: 2}, Pending: 1,
		Health: kith.WorkerHealth{Worker: "destination crm-hook", Failing: 1, Since: failedAt, LastError: "destination crm-hook: HTTP 500 Internal Server Error: receiver down"},
		Attempts: []activation.Attempt{
			{At: f.now.Add(-time.Minute), Messages: 3, Status: 200, Latency: 12 * time.Millisecond, Outcome: "delivered"},
			{At: failedAt, Messages: 1, Status: 500, Latency: 3400 * time.Microsecond, Outcome: "retry", Error: "HTTP 500 Internal Server Error: receiver down"},
		},
	}}}
}

// The destinations pages show what the API shows — each destination's
// settings without secrets, subscription, state, health and counts, its
// latest requests, and the retrying and dead-lettered deliveries to a
// token that may read messages about people (masked without pii:read) —
// and take the API's scopes.
func TestConsoleDestinations(t *testing.T) {
	f := person(t)
	eng := destinations(t, f)
	mux := f.console(console.Config{Audiences: f.eng, Destinations: eng})
	tests := []struct {
		name   string
		scopes []string
		path   string
		// row, if set, names the destination whose row of the list the
		// page's wants are looked for in.
		row    string
		status int
		want   []string
		absent []string
	}{
		{
			name: "list", scopes: []string{kith.ScopeSourcesRead}, path: "/destinations", status: http.StatusOK,
			want:   []string{`<a href="/destinations" aria-current="page">Destinations</a>`, "crm-hook", "warehouse"},
			absent: []string{hookSecret, hookHeader, segmentKey, "whsec_"},
		},
		{
			name: "list: a failing webhook", scopes: []string{kith.ScopeSourcesRead}, path: "/destinations", row: "crm-hook", status: http.StatusOK,
			want: []string{
				`<a href="/destinations/crm-hook">crm-hook</a>`, "webhook", "https:/<wbr>/<wbr>hooks.example.com/<wbr>kith",
				"Events: all events", `<span class="chip">buyers</span>`, "as track", `<span class="chip">Advertising</span>`,
				`<td data-label="State">running</td>`, `<span class="bad">failing</span>`, "HTTP 500 Internal Server Error: receiver down",
				`<td data-label="Delivered" class="num">7</td>`,
				// Pending: the log holds 5 events and the change stream 3
				// changes; it is at 2 and 0. The oldest pending event
				// arrived 63 minutes ago.
				`<td data-label="Pending" class="num">6<div class="muted small">oldest 1 h ago</div></td>`,
				`<td data-label="Retrying" class="num"><span class="bad">1</span></td>`,
				`<td data-label="Dead-lettered" class="num"><span class="bad">2</span></td>`,
				`<td data-label="Filtered" class="num">3<div class="muted small">consent 1, subscription 2</div></td>`,
			},
		},
		{
			name: "list: a paused segment forwarder", scopes: []string{kith.ScopeSourcesRead}, path: "/destinations", row: "warehouse", status: http.StatusOK,
			want: []string{
				`<a href="/destinations/warehouse">warehouse</a>`, "segment", "https:/<wbr>/<wbr>collect.example.org", "Events: types: identify",
				`<td data-label="State"><span class="chip">paused</span></td>`, `<span class="muted">none required</span>`,
				`<td data-label="Delivered" class="num">0</td>`,
				// It subscribes to no audience: only the log's 3 events.
				`<td data-label="Pending" class="num">3<div class="muted small">oldest 1 h ago</div></td>`,
				`<td data-label="Dead-lettered" class="num">0</td>`,
			},
			absent: []string{"failing", "Audiences:"},
		},
		{
			name: "detail without profiles:read", scopes: []string{kith.ScopeSourcesRead}, path: "/destinations/crm-hook", status: http.StatusOK,
			want: []string{
				"<h1>crm-hook", "HTTP 500 Internal Server Error: receiver down", "(since " + f.now.Add(-10*time.Second).UTC().Format("2006-01-02 15:04:05") + ")",
				`<div class="n">7</div><div class="l">delivered</div>`, `<div class="n">6</div><div class="l">pending, oldest 1 h ago</div>`,
				`<div class="n">2</div><div class="l">dead-lettered</div>`, "filtered (consent 1, subscription 2)",
				"<dt>url</dt><dd><code>https://hooks.example.com/kith</code></dd>", "<dt>secret</dt><dd><code>(secret)</code></dd>",
				`<span class="chip">ltv_365d</span> <span class="muted">changes as identify</span>`,
				`<dt>Mapping</dt><dd><code>{&#34;rename&#34;:{&#34;userId&#34;:&#34;customer_id&#34;}}</code></dd>`,
				"trait changes 0",
				// The latest requests, newest first.
				`<td data-label="Status" class="num">500</td><td data-label="Latency" class="num">3.4 ms</td>`,
				`<td data-label="Status" class="num">200</td><td data-label="Latency" class="num">12 ms</td>`,
				`<span class="bad">retry</span>`, `<span class="ok">delivered</span>`,
				"needs the profiles:read scope",
			},
			absent: []string{hookSecret, hookHeader, "whsec_", "dlv_dst_hook", "HTTP 410 Gone", "/pause", "/replay"},
		},
		{
			name: "detail with profiles:read, masked", scopes: []string{kith.ScopeSourcesRead, kith.ScopeProfilesRead}, path: "/destinations/crm-hook", status: http.StatusOK,
			want: []string{
				`<h2 id="retrying">Waiting for a retry</h2>`, `<code class="id">dlv_dst_hook_e1</code>`, "<summary>page Home</summary>", "HTTP 503 Service Unavailable: try later",
				`<h2 id="dead">Dead letters</h2>`, `<code class="id">dlv_dst_hook_e2</code>`, "<summary>identify</summary>",
				`<td data-label="Last status" class="num">400</td>`, "HTTP 400 Bad Request: unknown field traits",
				`<code class="id">dlv_dst_hook_e3</code>`, "<summary>track Order Completed</summary>", "HTTP 410 Gone",
				`<a href="/customers/p_bob">`,
			},
			absent: []string{"ada@example.com", hookSecret, "needs the profiles:read scope"},
		},
		{
			name: "detail with pii:read", scopes: []string{kith.ScopeSourcesRead, kith.ScopeProfilesRead, kith.ScopePIIRead}, path: "/destinations/crm-hook", status: http.StatusOK,
			want: []string{"ada@example.com"},
		},
		{
			name: "actions with sources:write", scopes: []string{kith.ScopeSourcesRead, kith.ScopeSourcesWrite}, path: "/destinations/crm-hook", status: http.StatusOK,
			want: []string{`action="/destinations/crm-hook/pause" method="post"><input type="hidden" name="csrf"`, `action="/destinations/crm-hook/replay"`, "Replay 2 dead letters"},
		},
		{
			name: "paused, with sources:write", scopes: []string{kith.ScopeSourcesRead, kith.ScopeSourcesWrite}, path: "/destinations/warehouse", status: http.StatusOK,
			want:   []string{`action="/destinations/warehouse/resume"`, "No worker runs for this destination while it is paused.", "New events wait in the log until it is resumed."},
			absent: []string{segmentKey, "/replay"},
		},
		{
			name: "no such destination", scopes: []string{kith.ScopeSourcesRead}, path: "/destinations/nothing", status: http.StatusNotFound,
		},
		{
			name: "list without sources:read", scopes: []string{kith.ScopeProfilesRead, kith.ScopeStatsRead}, path: "/destinations", status: http.StatusForbidden,
			want: []string{"sources:read"}, absent: []string{"crm-hook", `href="/destinations"`},
		},
		{
			name: "detail without sources:read", scopes: []string{kith.ScopeProfilesRead}, path: "/destinations/crm-hook", status: http.StatusForbidden,
			absent: []string{"receiver down", "dlv_dst_hook"},
		},
		{
			name: "no nav link without sources:read", scopes: []string{kith.ScopeProfilesRead}, path: "/customers", status: http.StatusOK,
			want: []string{`href="/customers"`}, absent: []string{`href="/destinations"`},
		},
		{
			name: "nav link with sources:read", scopes: []string{kith.ScopeSourcesRead, kith.ScopeProfilesRead}, path: "/customers", status: http.StatusOK,
			want: []string{`<a href="/destinations" >Destinations</a>`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.signIn(mux, tc.scopes...)("GET", tc.path, nil)
			if rec.Code != tc.status {
				t.Fatalf("GET %s: %d, want %d\n%s", tc.path, rec.Code, tc.status, rec.Body)
			}
			page := rec.Body.String()
			if tc.row != "" {
				link := `<a href="/destinations/` + tc.row + `">`
				for _, tr := range strings.Split(page, "<tr>") {
					if strings.Contains(tr, link) {
						page = tr
					}
				}
			}
			for _, s := range tc.want {
				if !strings.Contains(page, s) {
					t.Errorf("GET %s lacks %q", tc.path, s)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(page, s) {
					t.Errorf("GET %s shows %q", tc.path, s)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", page)
			}
		})
	}
}

// The console counts as the API does (one computation: activation.Summarize).
func TestConsoleDestinationCountsAreTheAPIs(t *testing.T) {
	f := person(t)
	eng := destinations(t, f)
	srv := httpapi.New(f.db, nil, nil, httpapi.Config{Destinations: eng, Now: func() time.Time { return f.now }, Logger: quiet})
	t.Cleanup(srv.Close)
	tok := f.token(kith.ScopeSourcesRead)
	req := httptest.NewRequest("GET", "/v1/destinations/crm-hook", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	var v httpapi.DestinationView
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &v) != nil {
		t.Fatalf("API: %d %s", rec.Code, rec.Body)
	}
	if v.Pending != 6 || v.Delivered != 7 || v.Retrying != 1 || v.DeadLettered != 2 || v.Filtered != 3 {
		t.Fatalf("the API's counts are not the fixture's: %+v", v.DestinationAccount)
	}
	page := f.signIn(f.console(console.Config{Destinations: eng}), kith.ScopeSourcesRead)("GET", "/destinations/crm-hook", nil).Body.String()
	for what, n := range map[string]int64{"delivered": v.Delivered, "pending": v.Pending, "waiting for a retry": v.Retrying, "dead-lettered": v.DeadLettered, "filtered": v.Filtered} {
		if want := fmt.Sprintf(`<div class="n">%d</div><div class="l">%s`, n, what); !strings.Contains(page, want) {
			t.Errorf("the console's %s is not the API's %d", what, n)
		}
	}
}

// Pause, resume and replay are POST forms that take the CSRF token and
// sources:write, and act through the engine.
func TestConsoleDestinationActions(t *testing.T) {
	f := person(t)
	eng := destinations(t, f)
	mux := f.console(console.Config{Destinations: eng})
	writer := f.signIn(mux, kith.ScopeSourcesRead, kith.ScopeSourcesWrite)
	reader := f.signIn(mux, kith.ScopeSourcesRead)
	csrf := func(browse func(method, path string, form url.Values) *httptest.ResponseRecorder) string {
		m := csrfRe.FindStringSubmatch(browse("GET", "/destinations", nil).Body.String())
		if m == nil {
			t.Fatal("no CSRF token on the destinations page")
		}
		return m[1]
	}
	wtok, rtok := csrf(writer), csrf(reader)
	tests := []struct {
		name     string
		browse   func(method, path string, form url.Values) *httptest.ResponseRecorder
		path     string
		csrf     string
		status   int
		location string
		paused   []string
		replayed []string
	}{
		{"pause without the CSRF token", writer, "/destinations/crm-hook/pause", "", http.StatusForbidden, "", nil, nil},
		{"pause without sources:write", reader, "/destinations/crm-hook/pause", rtok, http.StatusForbidden, "", nil, nil},
		{"pause", writer, "/destinations/crm-hook/pause", wtok, http.StatusSeeOther, "/destinations/crm-hook", []string{"crm-hook true"}, nil},
		{"resume", writer, "/destinations/warehouse/resume", wtok, http.StatusSeeOther, "/destinations/warehouse", []string{"crm-hook true", "warehouse false"}, nil},
		{"pause no such destination", writer, "/destinations/nothing/pause", wtok, http.StatusNotFound, "", []string{"crm-hook true", "warehouse false"}, nil},
		{"replay without sources:write", reader, "/destinations/crm-hook/replay", rtok, http.StatusForbidden, "", []string{"crm-hook true", "warehouse false"}, nil},
		{"replay", writer, "/destinations/crm-hook/replay", wtok, http.StatusSeeOther, "/destinations/crm-hook?replayed=2", []string{"crm-hook true", "warehouse false"}, []string{"dst_hook"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.browse("POST", tc.path, url.Values{"csrf": {tc.csrf}})
			if rec.Code != tc.status || rec.Header().Get("Location") != tc.location {
				t.Fatalf("POST %s: %d Location %q, want %d %q\n%s", tc.path, rec.Code, rec.Header().Get("Location"), tc.status, tc.location, rec.Body)
			}
			if fmt.Sprint(eng.paused) != fmt.Sprint(tc.paused) || fmt.Sprint(eng.replayed) != fmt.Sprint(tc.replayed) {
				t.Errorf("the engine paused %v and replayed %v, want %v and %v", eng.paused, eng.replayed, tc.paused, tc.replayed)
			}
		})
	}
	// What the pause did shows, and so does the replay's answer.
	page := writer("GET", "/destinations/crm-hook?replayed=2", nil).Body.String()
	for _, want := range []string{`<span class="chip">paused</span>`, `action="/destinations/crm-hook/resume"`, "2 dead letters sent again"} {
		if !strings.Contains(page, want) {
			t.Errorf("after the pause and the replay, the page lacks %q", want)
		}
	}
}

// Without the delivery engine there is no destinations page, nor a link
// to it.
func TestConsoleWithoutDestinations(t *testing.T) {
	f := person(t)
	destinations(t, f)
	mux := f.console(console.Config{})
	browse := f.signIn(mux, kith.ScopeSourcesRead, kith.ScopeStatsRead)
	if rec := browse("GET", "/destinations", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET /destinations without the engine: %d", rec.Code)
	}
	if page := browse("GET", "/", nil).Body.String(); strings.Contains(page, `href="/destinations"`) {
		t.Error("the overview links to a destinations page that does not exist")
	}
}

// fakeEraser lists erasures as privacy.Service does, with each
// destination's deletion status read in.
type fakeEraser struct{ list []kith.Erasure }

func (e fakeEraser) Request(ctx context.Context, ref string, suppress bool, by string) (kith.Erasure, error) {
	return kith.Erasure{}, fmt.Errorf("not used")
}

func (e fakeEraser) Erasures(ctx context.Context, limit int) ([]kith.Erasure, error) {
	return e.list, nil
}

// The privacy page lists, for each erasure, the destinations it sent a
// deletion to and how each is doing, a failed one with its error.
func TestPrivacyPageShowsDeletions(t *testing.T) {
	f := person(t)
	er := fakeEraser{list: []kith.Erasure{{ID: "era_1", Status: kith.ErasureFinished, IdentType: "user_id", CreatedAt: f.now,
		Destinations: []kith.ErasureDestination{
			{ID: "dst_a", Name: "crm-hook", Status: kith.DeletionSent},
			{ID: "dst_b", Name: "ads-sync", Status: kith.DeletionFailed, Error: "HTTP 410 Gone"},
		}}, {ID: "era_2", Status: kith.ErasureFinished, IdentType: "email", CreatedAt: f.now}}}
	page := f.signIn(f.console(console.Config{Eraser: er}), kith.ScopePrivacyWrite)("GET", "/privacy", nil).Body.String()
	for _, want := range []string{
		`crm-hook: <span class="ok">sent</span>`,
		`ads-sync: <span class="bad">failed</span> <span class="muted small">HTTP 410 Gone</span>`,
		`<code>era_2</code>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q in the privacy page", want)
		}
	}
}
