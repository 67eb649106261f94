package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// browser is an HTTP client with a cookie jar that does not follow
// redirects, like a person clicking through the console.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, s *Server) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: "http://" + s.Addr(), c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) (int, string, http.Header) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp.Header
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestConsole(t *testing.T) {
	s := startServer(t)
	postBatch(t, s, "web", `{"batch":[
		{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","firstName":"Ada","lastName":"<script>alert(1)</script>"},"context":{"consent":{"categoryPreferences":{"Advertising":true}}}},
		{"type":"track","userId":"u1","event":"Order Completed","properties":{"order_id":"o1","revenue":12.5},"context":{"library":{"name":"analytics.js"}}}]}`)
	waitProcessed(t, s)
	b := newBrowser(t, s)

	// Not signed in: the sign-in page at /, a redirect elsewhere.
	code, page, _ := b.do("GET", "/", nil)
	if code != 200 || !strings.Contains(page, `name="token"`) {
		t.Fatalf("GET / signed out: %d", code)
	}
	if code, _, h := b.do("GET", "/customers/user_id:u1", nil); code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("a page signed out: %d %s", code, h.Get("Location"))
	}
	if code, page, _ := b.do("POST", "/login", url.Values{"token": {"wrong"}}); code != http.StatusUnauthorized || !strings.Contains(page, "not valid") {
		t.Fatalf("bad token: %d", code)
	}
	code, _, h := b.do("POST", "/login", url.Values{"token": {s.Config.AdminToken}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", code)
	}
	ck := h.Get("Set-Cookie")
	if !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Fatalf("session cookie %q", ck)
	}

	// Overview from the counters.
	code, page, _ = b.do("GET", "/", nil)
	if code != 200 || !strings.Contains(page, "customer profiles") || !strings.Contains(page, ">web<") {
		t.Fatalf("overview: %d\n%s", code, page)
	}
	// Search by a bare e-mail address opens the customer.
	code, _, h = b.do("GET", "/customers?q=ada@example.com", nil)
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/customers/p_") {
		t.Fatalf("search: %d %s", code, h.Get("Location"))
	}
	code, page, _ = b.do("GET", h.Get("Location"), nil)
	if code != 200 {
		t.Fatalf("customer: %d", code)
	}
	for _, want := range []string{"Order Completed", "ada@example.com", "Advertising", "granted", "web", "&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the customer page lacks %q", want)
		}
	}
	// The timeline by channel.
	_, webOnly, _ := b.do("GET", h.Get("Location")+"?channel=web", nil)
	_, appOnly, _ := b.do("GET", h.Get("Location")+"?channel=app", nil)
	if !strings.Contains(webOnly, "order_id o1") || strings.Contains(appOnly, "order_id o1") {
		t.Fatal("the channel filter does not filter")
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Fatal("a hostile trait value was not escaped")
	}
	// By the start of a name, as typed or capitalised.
	if code, _, h := b.do("GET", "/customers?q=ada", nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/customers/p_") {
		t.Fatalf("search by name: %d %s", code, h.Get("Location"))
	}
	if code, _, _ := b.do("GET", "/customers?q=email:nobody@example.com", nil); code != http.StatusNotFound {
		t.Fatalf("unknown customer: %d", code)
	}

	// Forms need the CSRF token.
	if code, _, _ := b.do("POST", "/audiences/dry-run", url.Values{"definition": {`traits.email exists`}}); code != http.StatusForbidden {
		t.Fatalf("a form without CSRF: %d", code)
	}
	_, page, _ = b.do("GET", "/audiences", nil)
	csrf := csrfRe.FindStringSubmatch(page)[1]
	code, page, _ = b.do("POST", "/audiences/dry-run", url.Values{"definition": {`traits.email exists`}, "csrf": {csrf}})
	if code != 200 || !strings.Contains(page, "<strong>1</strong> customers match") {
		t.Fatalf("dry run: %d\n%s", code, page)
	}
	code, page, _ = b.do("POST", "/audiences/dry-run", url.Values{"definition": {`traits.email = `}, "csrf": {csrf}})
	if code != 200 || !strings.Contains(page, "column") {
		t.Fatalf("a bad definition: %d", code)
	}

	// An audience's page lists its members; insights say when there is
	// no run yet.
	apiJSON(t, s, "POST", "/v1/audiences", `{"key":"buyers","definition":"count(event \"Order Completed\") >= 1"}`)
	waitBackfilled(t, s, "/v1/audiences")
	if _, page, _ := b.do("GET", "/audiences", nil); !strings.Contains(page, `aria-label="members over the last 30 days: from 0 to 1"`) {
		t.Fatalf("audiences list: no size trend from 0 to 1")
	}
	code, page, _ = b.do("GET", "/audiences/buyers", nil)
	if code != 200 || !strings.Contains(page, `href="/customers/p_`) || !strings.Contains(page, "<div class=\"n\">1</div>") {
		t.Fatalf("audience page: %d\n%s", code, page)
	}
	if code, page, _ = b.do("GET", "/insights", nil); code != 200 || !strings.Contains(page, "No finished insight run") {
		t.Fatalf("insights page: %d", code)
	}

	// A reader token sees no privacy page and masked personal data.
	out, err := cli(t, s, "token", "create", "reader", "--scopes", "profiles:read stats:read")
	if err != nil {
		t.Fatal(err)
	}
	reader := regexp.MustCompile(`token: (kt_[0-9a-f]+)`).FindStringSubmatch(out)[1]
	rb := newBrowser(t, s)
	rb.do("POST", "/login", url.Values{"token": {reader}})
	if code, _, _ := rb.do("GET", "/privacy", nil); code != http.StatusForbidden {
		t.Fatalf("reader on /privacy: %d", code)
	}
	// Names are personal: a reader cannot search by them.
	if code, page, _ := rb.do("GET", "/customers?q=ada", nil); code != http.StatusNotFound || !strings.Contains(page, "pii:read") {
		t.Fatalf("reader searching by name: %d", code)
	}
	_, page, _ = rb.do("GET", "/customers/user_id:u1", nil)
	if strings.Contains(page, "ada@example.com") || !strings.Contains(page, "a***@example.com") || strings.Contains(page, "/erase") || strings.Contains(page, `href="/privacy"`) {
		t.Fatalf("reader's customer page shows what it may not: clear %v masked %v erase %v privacy link %v",
			strings.Contains(page, "ada@example.com"), strings.Contains(page, "a***@example.com"), strings.Contains(page, "/erase"), strings.Contains(page, `href="/privacy"`))
	}

	// The admin erases a customer from their page.
	_, page, _ = b.do("GET", "/customers/user_id:u1", nil)
	csrf = csrfRe.FindStringSubmatch(page)[1]
	code, _, h = b.do("POST", "/customers/user_id:u1/erase", url.Values{"identifier": {"user_id:u1"}, "suppress": {"on"}, "csrf": {csrf}})
	if code != http.StatusSeeOther || h.Get("Location") != "/privacy" {
		t.Fatalf("erase: %d %s", code, h.Get("Location"))
	}

	// The admin's privacy page lists erasures and the audit log.
	code, page, _ = b.do("GET", "/privacy", nil)
	if code != 200 || !strings.Contains(page, "Audit log") || !strings.Contains(page, "/v1/tokens") || !strings.Contains(page, "era_") {
		t.Fatalf("privacy page: %d", code)
	}
	// What is done in the console is in the audit log, without
	// identifiers in clear.
	_, audit := apiJSON(t, s, "GET", "/v1/audit?action=console&limit=1000", "")
	var actions []string
	for _, x := range audit["data"].([]any) {
		e := x.(map[string]any)
		target, _ := e["target"].(string)
		actions = append(actions, e["action"].(string)+" "+target)
	}
	all := strings.Join(actions, "\n")
	for _, want := range []string{"console POST /login", "console GET /customers/{ref} ref=user_id:#", "console POST /customers/{ref}/erase ref=user_id:#", "console GET /privacy"} {
		if !strings.Contains(all, want) {
			t.Errorf("no audit entry %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "u1") {
		t.Errorf("an identifier in clear in the audit log:\n%s", all)
	}
	// Signing out ends the session.
	b.do("POST", "/logout", url.Values{"csrf": {csrf}})
	if code, _, _ := b.do("GET", "/customers/user_id:u1", nil); code != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", code)
	}
}

// TestConsoleUnmerge: a merge shown on the customer page is undone from
// there.
func TestConsoleUnmerge(t *testing.T) {
	s := startServer(t)
	postBatch(t, s, "web", `{"batch":[{"type":"track","anonymousId":"a1","event":"Viewed","context":{"traits":{"email":"ada@example.com"}}},{"type":"track","userId":"u1","event":"Signed In"}]}`)
	waitProcessed(t, s)
	postBatch(t, s, "web2", `{"batch":[{"type":"identify","userId":"u1","traits":{"email":"ada@example.com"}}]}`)
	waitProcessed(t, s)
	b := newBrowser(t, s)
	b.do("POST", "/login", url.Values{"token": {s.Config.AdminToken}})
	_, page, _ := b.do("GET", "/customers/user_id:u1", nil)
	m := regexp.MustCompile(`name="merge" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no unmerge form on the customer page")
	}
	csrf := csrfRe.FindStringSubmatch(page)[1]
	code, _, _ := b.do("POST", "/customers/user_id:u1/unmerge", url.Values{"merge": {m[1]}, "csrf": {csrf}})
	if code != http.StatusSeeOther {
		t.Fatalf("unmerge: %d", code)
	}
	if canonicalOf(t, s, "user_id:u1") == canonicalOf(t, s, "anonymous_id:a1") {
		t.Fatal("the merge was not undone")
	}
}

// A revoked token's console session ends, and a sign-in posted from
// another site is refused.
func TestConsoleSessionEndsWithToken(t *testing.T) {
	s := startServer(t)
	out, err := cli(t, s, "token", "create", "temp", "--scopes", "profiles:read stats:read")
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`token: (kt_[0-9a-f]+)`).FindStringSubmatch(out)[1]
	id := regexp.MustCompile(`\((tok_[0-9a-f]+)\)`).FindStringSubmatch(out)[1]
	b := newBrowser(t, s)
	if code, _, _ := b.do("POST", "/login", url.Values{"token": {secret}}); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", code)
	}
	if code, _, _ := b.do("GET", "/", nil); code != 200 {
		t.Fatalf("overview: %d", code)
	}
	if _, err := cli(t, s, "token", "revoke", id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5100 * time.Millisecond) // the console checks a session's token every 5 s
	if code, page, _ := b.do("GET", "/", nil); code != 200 || !strings.Contains(page, `name="token"`) {
		t.Fatalf("after revocation: %d, want the sign-in page", code)
	}
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/login", strings.NewReader(url.Values{"token": {s.Config.AdminToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site sign-in: %d", resp.StatusCode)
	}
}
