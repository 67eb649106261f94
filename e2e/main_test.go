package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kithcdp/kith"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kithBin is the path of the kith binary that TestMain builds once for every
// test in the package.
var kithBin string

// TestMain builds the kith binary from the module root (the parent of this
// directory) into a temporary directory, runs the tests, and removes it.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain is TestMain's body, split out so deferred cleanup runs before the
// process exits.
func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kith-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: creating a temporary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	kithBin = filepath.Join(dir, "kith")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", kithBin, "./cmd/kith")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/kith failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// randomHex returns n random bytes as lower-case hex, for tokens, run ids
// and database names.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// randomDigits returns n random decimal digits, for phone numbers.
func randomDigits(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago: the kernel picks it for a listener that is closed at once.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stderr copier and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverOptions are the ways a test may start kith differently.
type serverOptions struct {
	// Postgres, when set, is passed as --postgres.
	Postgres string
}

// server is one kith installation under test: a data directory and an
// admin token that survive restarts, and the process currently serving it.
type server struct {
	t       testing.TB
	opts    serverOptions
	dataDir string
	token   string
	// URL is the base URL of the running process, e.g. http://127.0.0.1:4321.
	URL string

	mu   sync.Mutex
	proc *serverProc
	runs []*serverProc
}

// serverProc is one run of the kith process.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	err    error // the result of cmd.Wait, valid after done is closed
}

// client is the HTTP client for every request the tests make themselves.
var client = &http.Client{Timeout: 30 * time.Second}

// startServer creates a data directory and an admin token, starts kith on
// them, waits until it is healthy, and registers a cleanup that stops it
// and, if the test failed, logs what every run of the process wrote to
// stderr.
func startServer(t testing.TB, opts serverOptions) *server {
	t.Helper()
	s := &server{
		t:       t,
		opts:    opts,
		dataDir: t.TempDir(),
		token:   "adm_" + randomHex(16),
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			s.logStderr()
		}
	})
	s.start()
	return s
}

// logStderr writes the stderr of every run of the process to the test log,
// at most the last 64 KiB of each.
func (s *server) logStderr() {
	s.mu.Lock()
	runs := slices.Clone(s.runs)
	s.mu.Unlock()
	for i, p := range runs {
		out := p.stderr.String()
		if len(out) > 64<<10 {
			out = "…" + out[len(out)-64<<10:]
		}
		s.t.Logf("kith run %d (%s) stderr:\n%s", i+1, p.addr, out)
	}
}

// start launches the process on the server's data directory and a fresh
// port, retrying with another port if the process dies before it becomes
// healthy (another process may have taken the port in between).
func (s *server) start() {
	s.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := s.launch()
		if err == nil {
			s.mu.Lock()
			s.proc = p
			s.URL = "http://" + p.addr
			s.mu.Unlock()
			return
		}
		lastErr = err
		if !strings.Contains(p.stderr.String(), "address already in use") {
			break
		}
	}
	s.t.Fatalf("starting kith: %v", lastErr)
}

// launch starts one process and waits for GET /healthz to answer 200.
func (s *server) launch() (*serverProc, error) {
	addr := freeAddr(s.t)
	args := []string{"serve", "--data", s.dataDir, "--addr", addr}
	if s.opts.Postgres != "" {
		args = append(args, "--postgres", s.opts.Postgres)
	}
	cmd := exec.Command(kithBin, args...)
	// The child gets the test's environment without any PostgreSQL setting,
	// so that a server meant for SQLite never picks one up by accident.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KITH_POSTGRES_URL=") || strings.HasPrefix(kv, "KITH_ADMIN_TOKEN=")
	})
	cmd.Env = append(env, "KITH_ADMIN_TOKEN="+s.token)
	p := &serverProc{cmd: cmd, addr: addr, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return p, err
	}
	s.mu.Lock()
	s.runs = append(s.runs, p)
	s.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return p, fmt.Errorf("kith exited before it became healthy: %v", p.err)
		default:
		}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	<-p.done
	return p, errors.New("GET /healthz did not answer 200 within 30s")
}

// takeProc detaches the running process, if any, from s.
func (s *server) takeProc() *serverProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// stop ends the running process gracefully with SIGTERM, killing it if it
// has not exited after 15 seconds. A non-zero exit is logged: a graceful
// shutdown should not fail.
func (s *server) stop() {
	p := s.takeProc()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			s.t.Logf("kith on %s exited after SIGTERM with %v", p.addr, p.err)
		}
	case <-time.After(15 * time.Second):
		s.t.Errorf("kith on %s did not exit within 15s of SIGTERM; killing it", p.addr)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the running process with SIGKILL, as a crash would, and waits
// until it is gone.
func (s *server) kill() {
	p := s.takeProc()
	if p == nil {
		return
	}
	if err := p.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("killing kith: %v", err)
	}
	<-p.done
}

// restart starts a new process on the same data directory and token after
// stop or kill.
func (s *server) restart() {
	s.t.Helper()
	s.start()
}

// httpResult is a response read in full.
type httpResult struct {
	Status int
	Body   []byte
}

// String describes the response for failure messages.
func (r httpResult) String() string {
	b := r.Body
	if len(b) > 2000 {
		b = b[:2000]
	}
	return fmt.Sprintf("HTTP %d: %s", r.Status, b)
}

// request sends a request to the server and reads the whole response. It
// returns an error only for transport failures.
func (s *server) request(method, path string, header http.Header, body []byte) (httpResult, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		return httpResult{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, err
	}
	return httpResult{Status: resp.StatusCode, Body: b}, nil
}

// admin sends an admin API request with the bearer token. A non-nil body is
// sent as JSON.
func (s *server) admin(t testing.TB, method, path string, body any) httpResult {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + s.token}}
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatalf("encoding request body: %v", err)
		}
		h.Set("Content-Type", "application/json")
	}
	res, err := s.request(method, path, h, b)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

// adminJSON sends an admin API request, requires the status want, and
// decodes the JSON response into out (unless out is nil).
func (s *server) adminJSON(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	res := s.admin(t, method, path, body)
	if res.Status != want {
		t.Fatalf("%s %s: want HTTP %d, got %v", method, path, want, res)
	}
	if out != nil {
		if err := json.Unmarshal(res.Body, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, res.Body, err)
		}
	}
}

// source is a source as the admin API returns it on creation.
type source struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	WriteKey string `json:"writeKey"`
}

// createSource creates a source and checks that the response carries an id
// and a write key.
func (s *server) createSource(t testing.TB, name string) source {
	t.Helper()
	var src source
	s.adminJSON(t, http.MethodPost, "/v1/sources", map[string]string{"name": name}, http.StatusCreated, &src)
	if src.ID == "" || src.WriteKey == "" || src.Name != name {
		t.Fatalf("POST /v1/sources: want id, writeKey and name %q, got %+v", name, src)
	}
	return src
}

// collectResponse is the body of a 200 from the collection API.
type collectResponse struct {
	Success  bool `json:"success"`
	Rejected []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// send posts a Segment message or batch to the collection endpoint path
// (e.g. /v1/batch) with the write key as Basic auth username, optionally
// gzip-compressed. It returns an error only for transport failures.
func (s *server) send(writeKey, path string, body any, gzipped bool) (httpResult, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return httpResult{}, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if gzipped {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		b = buf.Bytes()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Authorization", basicAuth(writeKey))
	return s.request(http.MethodPost, path, h, b)
}

// basicAuth returns the Authorization header value that carries a write
// key as the Basic auth username with an empty password.
func basicAuth(writeKey string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(writeKey+":"))
}

// mustSend is send for callers that require a 200 with success true and no
// rejected items.
func (s *server) mustSend(t testing.TB, writeKey, path string, body any) {
	t.Helper()
	res, err := s.send(writeKey, path, body, false)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("POST %s: want HTTP 200, got %v", path, res)
	}
	var cr collectResponse
	if err := json.Unmarshal(res.Body, &cr); err != nil {
		t.Fatalf("POST %s: decoding %s: %v", path, res.Body, err)
	}
	if !cr.Success || len(cr.Rejected) != 0 {
		t.Fatalf("POST %s: want success and no rejections, got %s", path, res.Body)
	}
}

// counts are the accounting counters of a source or of all sources, in the
// wire shape of GET /v1/stats.
type counts = kith.Counts

// sourceStats is one source's entry in GET /v1/stats.
type sourceStats struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	counts
}

// stats is the body of GET /v1/stats.
type stats struct {
	Sources []sourceStats `json:"sources"`
	Totals  counts        `json:"totals"`
}

// source returns the counters of the source with the given id, failing the
// test if it is not listed.
func (st stats) source(t testing.TB, id string) counts {
	t.Helper()
	for _, s := range st.Sources {
		if s.ID == id {
			return s.counts
		}
	}
	t.Fatalf("GET /v1/stats: source %s not listed in %+v", id, st.Sources)
	return counts{}
}

// stats reads GET /v1/stats.
func (s *server) stats(t testing.TB) stats {
	t.Helper()
	var st stats
	s.adminJSON(t, http.MethodGet, "/v1/stats", nil, http.StatusOK, &st)
	return st
}

// checkCountsAddUp requires that every received event is accounted for
// exactly once, for every source and for the totals, that no more events
// were processed than accepted, and that the totals are the sums of the
// sources.
func checkCountsAddUp(t testing.TB, st stats) {
	t.Helper()
	check := func(what string, c counts) {
		t.Helper()
		if c.Received != c.Accepted+c.Duplicate+c.RejectedTotal() {
			t.Errorf("stats %s: received %d != accepted %d + duplicate %d + rejected %d (%v)",
				what, c.Received, c.Accepted, c.Duplicate, c.RejectedTotal(), c.Rejected)
		}
		if c.Processed > c.Accepted {
			t.Errorf("stats %s: processed %d > accepted %d", what, c.Processed, c.Accepted)
		}
	}
	var sum counts
	for _, s := range st.Sources {
		check("source "+s.Name, s.counts)
		sum.Received += s.Received
		sum.Accepted += s.Accepted
		sum.Duplicate += s.Duplicate
		sum.Processed += s.Processed
	}
	check("totals", st.Totals)
	if sum.Received != st.Totals.Received || sum.Accepted != st.Totals.Accepted ||
		sum.Duplicate != st.Totals.Duplicate || sum.Processed != st.Totals.Processed {
		t.Errorf("stats: totals %+v are not the sum of the sources %+v", st.Totals, sum)
	}
}

// waitProcessed polls GET /v1/stats until at least minAccepted events are
// accepted in total and all accepted events are processed, and returns the
// stats it last read.
func (s *server) waitProcessed(t testing.TB, minAccepted int64, timeout time.Duration) stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := s.stats(t)
		if st.Totals.Accepted >= minAccepted && st.Totals.Processed == st.Totals.Accepted {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for processing: want accepted >= %d and processed == accepted, last stats %+v",
				timeout, minAccepted, st.Totals)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// refPath returns the profile API path for a profile reference (an id or
// type:value), with the reference escaped as one path segment.
func refPath(ref string) string {
	return "/v1/profiles/" + strings.ReplaceAll(url.QueryEscape(ref), "+", "%20")
}

// profile is the body of GET /v1/profiles/{ref}.
type profile = kith.ProfileSummary

// getProfile reads a profile summary, requiring a 200.
func (s *server) getProfile(t testing.TB, ref string) profile {
	t.Helper()
	var p profile
	s.adminJSON(t, http.MethodGet, refPath(ref), nil, http.StatusOK, &p)
	if p.ID == "" {
		t.Fatalf("GET %s: profile without id", refPath(ref))
	}
	return p
}

// verboseTrait is one trait with its provenance.
type verboseTrait struct {
	Value     json.RawMessage `json:"value"`
	SourceID  string          `json:"sourceId"`
	MessageID string          `json:"messageId"`
	EventTime time.Time       `json:"eventTime"`
	ProfileID string          `json:"profileId"`
}

// traits reads the unified traits of a profile.
func (s *server) traits(t testing.TB, ref string) map[string]any {
	t.Helper()
	var body struct {
		Traits map[string]any `json:"traits"`
	}
	s.adminJSON(t, http.MethodGet, refPath(ref)+"/traits", nil, http.StatusOK, &body)
	return body.Traits
}

// verboseTraits reads the unified traits of a profile with provenance.
func (s *server) verboseTraits(t testing.TB, ref string) map[string]verboseTrait {
	t.Helper()
	var body struct {
		Traits map[string]verboseTrait `json:"traits"`
	}
	s.adminJSON(t, http.MethodGet, refPath(ref)+"/traits?verbose=true", nil, http.StatusOK, &body)
	return body.Traits
}

// identity is one identifier of a profile, in the wire shape of
// GET /v1/profiles/{ref}/identities.
type identity = kith.Identity

// event is an event as the events API returns it, in Segment shape.
type event struct {
	MessageID   string          `json:"messageId"`
	Type        string          `json:"type"`
	Event       string          `json:"event"`
	Name        string          `json:"name"`
	UserID      string          `json:"userId"`
	AnonymousID string          `json:"anonymousId"`
	PreviousID  string          `json:"previousId"`
	Timestamp   time.Time       `json:"timestamp"`
	Properties  map[string]any  `json:"properties"`
	Traits      map[string]any  `json:"traits"`
	Context     json.RawMessage `json:"context"`
}

// merge is one recorded merge of a profile.
type merge struct {
	Survivor       string    `json:"survivor"`
	Absorbed       string    `json:"absorbed"`
	SourceID       string    `json:"sourceId"`
	MessageID      string    `json:"messageId"`
	IdentifierType string    `json:"identifierType"`
	Identifier     string    `json:"identifier"`
	At             time.Time `json:"at"`
}

// page is the data/cursor envelope of the profile API's lists.
type page[T any] struct {
	Data   []T `json:"data"`
	Cursor struct {
		HasMore bool   `json:"has_more"`
		Next    string `json:"next"`
	} `json:"cursor"`
}

// listAll reads every page of a profile API list, following the cursor,
// and fails on a cursor that does not advance.
func listAll[T any](t testing.TB, s *server, path string, q url.Values) []T {
	t.Helper()
	var all []T
	seen := map[string]bool{}
	for n := 0; ; n++ {
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		var pg page[T]
		s.adminJSON(t, http.MethodGet, p, nil, http.StatusOK, &pg)
		all = append(all, pg.Data...)
		if !pg.Cursor.HasMore {
			return all
		}
		if pg.Cursor.Next == "" || seen[pg.Cursor.Next] || n > 10000 {
			t.Fatalf("GET %s: has_more with a missing or repeated cursor %q", p, pg.Cursor.Next)
		}
		seen[pg.Cursor.Next] = true
		q = cloneValues(q)
		q.Set("next", pg.Cursor.Next)
	}
}

// cloneValues copies query values so a caller's map is never changed.
func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}

// identities reads every identifier of a profile.
func (s *server) identities(t testing.TB, ref string) []identity {
	t.Helper()
	return listAll[identity](t, s, refPath(ref)+"/identities", nil)
}

// events reads every event of a profile matching q (limit, type, event,
// start, end), newest first.
func (s *server) events(t testing.TB, ref string, q url.Values) []event {
	t.Helper()
	return listAll[event](t, s, refPath(ref)+"/events", q)
}

// merges reads every recorded merge of a profile.
func (s *server) merges(t testing.TB, ref string) []merge {
	t.Helper()
	return listAll[merge](t, s, refPath(ref)+"/merges", nil)
}

// sentMessage is what a client reports having sent and the server
// acknowledged.
type sentMessage struct {
	MessageID string `json:"messageId"`
	Type      string `json:"type"`
	Event     string `json:"event"`
}

// visitor is the anonymous visitor who signs up, whose traffic every SDK
// scenario sends. The fields are derived from the SDK name and a run id the
// same way in send.mjs, so the Node script and the Go tests agree.
type visitor struct {
	AnonymousID string
	UserID      string
	// RawEmail is the e-mail as the visitor typed it: odd case and padding.
	RawEmail string
	// Email is RawEmail trimmed and lower-cased, the identifier's value.
	Email string
	Name  string
	Plan  string
}

// newVisitor derives the visitor for one SDK and run id.
func newVisitor(sdk, runID string) visitor {
	return visitor{
		AnonymousID: "anon-" + sdk + "-" + runID,
		UserID:      "user-" + sdk + "-" + runID,
		RawEmail:    "  Visitor." + strings.ToUpper(sdk) + "." + runID + "@Example.COM ",
		Email:       "visitor." + strings.ToLower(sdk) + "." + runID + "@example.com",
		Name:        "Visitor " + runID,
		Plan:        "pro",
	}
}

// checkVisitorProfile verifies what every SDK scenario must produce: one
// profile that the user id, the e-mail and the anonymous id all resolve to;
// the identify call's traits with provenance; the three identifiers; every
// sent message on the timeline exactly once, newest first, dated between
// sentAfter and now (the SDKs' clocks are the test's); and stats for the
// source that add up.
func checkVisitorProfile(t *testing.T, s *server, src source, v visitor, sent []sentMessage, sentAfter time.Time) {
	t.Helper()
	if len(sent) == 0 {
		t.Fatal("the client reported no sent messages")
	}
	st := s.waitProcessed(t, int64(len(sent)), 30*time.Second)
	checkCountsAddUp(t, st)
	c := st.source(t, src.ID)
	if c.Accepted != int64(len(sent)) {
		t.Errorf("stats for %s: want accepted %d (one per sent message), got %+v", src.Name, len(sent), c)
	}
	if c.Received < c.Accepted {
		t.Errorf("stats for %s: received %d < accepted %d", src.Name, c.Received, c.Accepted)
	}

	// Every identifier resolves to the same unified profile.
	p := s.getProfile(t, "user_id:"+v.UserID)
	for _, ref := range []string{"email:" + v.Email, "anonymous_id:" + v.AnonymousID, p.ID} {
		if got := s.getProfile(t, ref); got.ID != p.ID {
			t.Errorf("GET %s: want profile %s (as for user_id:%s), got %s", refPath(ref), p.ID, v.UserID, got.ID)
		}
	}
	if !slices.Contains(p.Members, p.ID) {
		t.Errorf("profile %s: members %v do not include the profile itself", p.ID, p.Members)
	}
	if p.Events != int64(len(sent)) {
		t.Errorf("profile %s: want events %d, got %d", p.ID, len(sent), p.Events)
	}
	if p.Identifiers < 3 {
		t.Errorf("profile %s: want at least 3 identifiers, got %d", p.ID, p.Identifiers)
	}

	// Traits: the identify call's, with provenance pointing at it.
	var identifyID string
	for _, m := range sent {
		if m.Type == "identify" {
			identifyID = m.MessageID
		}
	}
	tr := s.traits(t, "email:"+v.Email)
	if tr["name"] != v.Name || tr["plan"] != v.Plan {
		t.Errorf("traits: want name %q and plan %q, got %v", v.Name, v.Plan, tr)
	}
	if e, _ := tr["email"].(string); strings.ToLower(strings.TrimSpace(e)) != v.Email {
		t.Errorf("traits: want email %q (as sent or normalised), got %v", v.Email, tr["email"])
	}
	if p.Traits < 3 {
		t.Errorf("profile %s: want at least 3 traits, got %d", p.ID, p.Traits)
	}
	vt := s.verboseTraits(t, "anonymous_id:"+v.AnonymousID)
	for _, key := range []string{"name", "plan", "email"} {
		got, ok := vt[key]
		if !ok {
			t.Errorf("verbose traits: %q missing from %v", key, vt)
			continue
		}
		if got.SourceID != src.ID || got.MessageID != identifyID || got.EventTime.IsZero() ||
			!slices.Contains(p.Members, got.ProfileID) {
			t.Errorf("verbose trait %q: want source %s, message %s, an event time and a member profile of %v; got %+v",
				key, src.ID, identifyID, p.Members, got)
		}
	}
	var name string
	if json.Unmarshal(vt["name"].Value, &name); name != v.Name {
		t.Errorf("verbose trait name: want value %q, got %s", v.Name, vt["name"].Value)
	}

	// Identities: exactly the visitor's user id, anonymous id and e-mail.
	ids := s.identities(t, p.ID)
	want := []string{"anonymous_id:" + v.AnonymousID, "email:" + v.Email, "user_id:" + v.UserID}
	var got []string
	for _, id := range ids {
		switch id.Type {
		case "user_id", "anonymous_id", "email", "phone":
			got = append(got, id.Type+":"+id.Value)
		default:
			t.Logf("identity of another type: %+v", id)
		}
		if id.SourceID != src.ID || id.MessageID == "" || id.FirstSeen.IsZero() || id.LastSeen.Before(id.FirstSeen) ||
			!slices.Contains(p.Members, id.ProfileID) {
			t.Errorf("identity %+v: want source %s, a message id, firstSeen <= lastSeen and a member profile of %v",
				id, src.ID, p.Members)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("identities: want %v, got %v", want, got)
	}

	// Events: every sent message exactly once, with its type, newest first,
	// at the time it was sent (within clock resolution).
	checkTimeline(t, s, p.ID, sent)
	now := time.Now()
	for _, e := range s.events(t, p.ID, nil) {
		if e.Timestamp.Before(sentAfter.Add(-time.Second)) || e.Timestamp.After(now.Add(time.Second)) {
			t.Errorf("event %s: timestamp %v is outside the time it was sent (%v to %v)",
				e.MessageID, e.Timestamp, sentAfter, now)
		}
	}
}

// checkTimeline requires the profile's events to be exactly the sent
// messages, each once and with its type and event name, newest first, and
// exercises paging, the type filter and the time window.
func checkTimeline(t *testing.T, s *server, ref string, sent []sentMessage) {
	t.Helper()
	evs := s.events(t, ref, url.Values{"limit": {"100"}})
	byID := map[string]int{}
	for i, e := range evs {
		byID[e.MessageID]++
		if i > 0 && e.Timestamp.After(evs[i-1].Timestamp) {
			t.Errorf("events: not newest first: %s (%v) after %s (%v)",
				e.MessageID, e.Timestamp, evs[i-1].MessageID, evs[i-1].Timestamp)
		}
	}
	for _, m := range sent {
		if byID[m.MessageID] != 1 {
			t.Errorf("events: message %s (%s %s) appears %d times, want once", m.MessageID, m.Type, m.Event, byID[m.MessageID])
		}
	}
	if len(evs) != len(sent) {
		t.Errorf("events: want %d, got %d", len(sent), len(evs))
	}
	sentByID := map[string]sentMessage{}
	for _, m := range sent {
		sentByID[m.MessageID] = m
	}
	for _, e := range evs {
		m, ok := sentByID[e.MessageID]
		if !ok {
			t.Errorf("events: unexpected event %+v", e)
			continue
		}
		if e.Type != m.Type {
			t.Errorf("event %s: want type %q, got %q", e.MessageID, m.Type, e.Type)
		}
		if m.Type == "track" && e.Event != m.Event {
			t.Errorf("event %s: want event %q, got %q", e.MessageID, m.Event, e.Event)
		}
		if e.Timestamp.IsZero() {
			t.Errorf("event %s: no timestamp", e.MessageID)
		}
	}

	// Paging one event at a time yields the same list in the same order.
	one := s.events(t, ref, url.Values{"limit": {"1"}})
	if !slices.EqualFunc(one, evs, func(a, b event) bool { return a.MessageID == b.MessageID }) {
		t.Errorf("events with limit=1: paging gave %v, want %v", messageIDs(one), messageIDs(evs))
	}

	// The type filter returns exactly the tracks.
	var tracks []string
	for _, m := range sent {
		if m.Type == "track" {
			tracks = append(tracks, m.MessageID)
		}
	}
	got := messageIDs(s.events(t, ref, url.Values{"type": {"track"}}))
	sort.Strings(tracks)
	sort.Strings(got)
	if !slices.Equal(got, tracks) {
		t.Errorf("events?type=track: want %v, got %v", tracks, got)
	}

	// The event filter returns exactly the tracks of one name.
	for _, m := range sent {
		if m.Type != "track" {
			continue
		}
		var want []string
		for _, o := range sent {
			if o.Type == "track" && o.Event == m.Event {
				want = append(want, o.MessageID)
			}
		}
		got := messageIDs(s.events(t, ref, url.Values{"event": {m.Event}}))
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("events?event=%s: want %v, got %v", m.Event, want, got)
		}
	}

	// A window that ends before the first event is empty; one around all
	// events returns them all.
	if len(evs) > 0 {
		first := evs[len(evs)-1].Timestamp
		last := evs[0].Timestamp
		if got := s.events(t, ref, url.Values{"end": {first.Add(-time.Hour).Format(time.RFC3339)}}); len(got) != 0 {
			t.Errorf("events?end=<before the first>: want none, got %v", messageIDs(got))
		}
		win := url.Values{
			"start": {first.Add(-time.Minute).Format(time.RFC3339Nano)},
			"end":   {last.Add(time.Minute).Format(time.RFC3339Nano)},
		}
		if got := s.events(t, ref, win); len(got) != len(evs) {
			t.Errorf("events?start&end around all events: want %d, got %d", len(evs), len(got))
		}
	}
}

// messageIDs lists the message ids of events in order.
func messageIDs(evs []event) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.MessageID
	}
	return ids
}

// checkNotFound requires GET of a profile path to answer 404 with the
// stable not_found error code.
func checkNotFound(t *testing.T, s *server, path string) {
	t.Helper()
	res := s.admin(t, http.MethodGet, path, nil)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if res.Status != http.StatusNotFound || json.Unmarshal(res.Body, &body) != nil || body.Error.Code != "not_found" || body.Error.Message == "" {
		t.Errorf("GET %s: want 404 with error code not_found and a message, got %v", path, res)
	}
}

// ctxTimeout returns a context cancelled after d or at the end of the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
