package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kithcdp/kith/storetest"
)

// chromiumPath finds Debian's Chromium (.ci/run installs it).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	storetest.Unavailable(t, "no Chromium on this machine (apt-get install chromium; .ci/run installs it)")
	return ""
}

// TestConsoleInBrowser drives the real binary's console in headless
// Chromium on the demo data: sign in, search a customer, open their 360
// page, see events from at least three channels and their audiences, try an
// audience in the builder and see its size, and see two webhook
// destinations made through the API (one receiver takes everything, the
// other answers 500, and 400 to page calls) with their counts, latest
// requests and dead letters. Screenshots of the overview, a 360 page,
// insights and the destinations pages (at desktop and phone width) are
// saved to KITH_ARTIFACTS (default: artifacts/ in the repository), to be
// looked at.
func TestConsoleInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	data := t.TempDir()
	addr := freeAddr(t)
	token := "kith-browser-" + randomHex(8)
	cmd := exec.Command(kithBin, "demo", "--data", data, "--addr", addr, "--customers", "400", "--seed", "3", "--insights-every", "0")
	cmd.Env = append(os.Environ(), "KITH_ADMIN_TOKEN="+token)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	base := "http://" + addr
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not become ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var demo struct{ Sample string }
	b, err := os.ReadFile(filepath.Join(data, "demo.json"))
	if err != nil || json.Unmarshal(b, &demo) != nil || demo.Sample == "" {
		t.Fatalf("demo.json: %v %s", err, b)
	}
	consoleDestinations(t, &server{t: t, URL: base, token: token})
	consoleErasure(t, &server{t: t, URL: base, token: token})
	artifacts := os.Getenv("KITH_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join("..", "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1366, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("browser, %s: %v\n%s", what, err, logs.String())
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser, text of %s: %v", sel, err)
		}
		return v
	}
	shot := func() []byte {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("browser, screenshot: %v", err)
		}
		return png
	}
	step("sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#sources")))
	overviewText := text("main")
	overview := shot()
	step("search the sample customer",
		chromedp.SendKeys(chromedp.CSS("#q"), demo.Sample),
		chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitVisible(chromedp.CSS("#timeline")))
	channels := text("section[aria-labelledby=timeline] table")
	audiences := text("section[aria-labelledby=audiences]")
	customer := shot()
	step("live validation",
		chromedp.Navigate(base+"/audiences"),
		chromedp.WaitVisible(chromedp.CSS("#definition")),
		chromedp.SendKeys(chromedp.CSS("#definition"), `count(event `),
		chromedp.WaitVisible(chromedp.CSS("#live.bad")))
	if live := text("#live"); !strings.Contains(live, "column") {
		t.Errorf("live validation of a broken definition: %q", live)
	}
	step("try an audience",
		chromedp.Navigate(base+"/audiences"),
		chromedp.WaitVisible(chromedp.CSS("#definition")),
		chromedp.SendKeys(chromedp.CSS("#definition"), `count(event "Order Completed") >= 1`),
		chromedp.Submit(chromedp.CSS("#definition")),
		chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=builder] strong")))
	dryRun := text("section[aria-labelledby=builder]")
	step("insights", chromedp.Navigate(base+"/insights"), chromedp.WaitVisible(chromedp.CSS("#grid")))
	insightsText := text("main")
	insightsShot := shot()
	if !strings.Contains(insightsText, "RFM segments") || !strings.Contains(insightsText, "Churn risk") || !strings.Contains(insightsText, "CLV by RFM segment") {
		t.Errorf("insights page: %q", insightsText)
	}
	// The destinations, at desktop width and at a phone's.
	shots := map[string][]byte{"console-overview.png": overview, "console-customer.png": customer, "console-insights.png": insightsShot}
	var destinationsText, failingText string
	for _, width := range []struct {
		name          string
		width, height int64
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		step("destinations at "+width.name+" width",
			chromedp.EmulateViewport(width.width, width.height),
			chromedp.Navigate(base+"/destinations"),
			chromedp.WaitVisible(chromedp.CSS("#list")))
		destinationsText = text("main")
		shots["console-destinations-"+width.name+".png"] = shot()
		step("a failing destination at "+width.name+" width",
			chromedp.Click(chromedp.CSS(`a[href="/destinations/ads-sync"]`)),
			chromedp.WaitVisible(chromedp.CSS("#dead")))
		failingText = text("main")
		shots["console-destination-"+width.name+".png"] = shot()
		step("the privacy page at "+width.name+" width",
			chromedp.Navigate(base+"/privacy"),
			chromedp.WaitVisible(chromedp.CSS("#erasures")))
		if privacyText := text("section[aria-labelledby=erasures]"); !strings.Contains(privacyText, "crm-hook: sent") {
			t.Errorf("the privacy page does not show the deletion sent to crm-hook:\n%s", privacyText)
		}
		shots["console-privacy-"+width.name+".png"] = shot()
	}
	for _, want := range []string{"crm-hook", "ads-sync", "webhook", "running", "failing", "HTTP 500 Internal Server Error: receiver down", "Events: all events",
		"Consent: Advertising", "advertising_ok", "consent 1"} {
		if !strings.Contains(destinationsText, want) {
			t.Errorf("destinations page lacks %q:\n%s", want, destinationsText)
		}
	}
	for _, want := range []string{"Latest requests", "500", "retry", "receiver down", "Waiting for a retry", "Dead letters", "page Home", "400", "page calls are not taken here"} {
		if !strings.Contains(failingText, want) {
			t.Errorf("the failing destination's page lacks %q:\n%s", want, failingText)
		}
	}
	if strings.Contains(destinationsText+failingText, "whsec_") {
		t.Error("a destinations page shows a signing secret")
	}
	for name, png := range shots {
		if err := os.WriteFile(filepath.Join(artifacts, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(overviewText, "customer profiles") || !strings.Contains(overviewText, "webshop") || !strings.Contains(overviewText, "pos") {
		t.Errorf("overview: %q", overviewText)
	}
	seen := 0
	for _, ch := range []string{"web", "app", "import: orders.csv", "import: crm_contacts.csv", "import: email_engagement.csv"} {
		if strings.Contains(channels, ch) {
			seen++
		}
	}
	if seen < 3 {
		t.Errorf("the customer's timeline shows %d channels:\n%s", seen, channels)
	}
	if strings.Contains(audiences, "In no audience") {
		t.Errorf("the sample customer is in no audience: %q", audiences)
	}
	if !strings.Contains(dryRun, "customers match") {
		t.Errorf("dry run: %q", dryRun)
	}
	fmt.Fprintf(os.Stderr, "console screenshots in %s\n", artifacts)
}

// consoleDestinations makes two webhook destinations through the API on
// loopback receivers, sends events for them, and waits until both have
// had their requests: crm-hook takes everything (every event, and the
// advertising_ok audience's changes); ads-sync takes events of customers
// who granted Advertising, and its receiver answers 500 (so they wait for
// a retry), and 400 to page calls (so those are dead-lettered at once).
func consoleDestinations(t *testing.T, s *server) {
	t.Helper()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ok.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Type string }
		json.NewDecoder(r.Body).Decode(&m)
		if m.Type == "page" {
			http.Error(w, "page calls are not taken here", http.StatusBadRequest)
			return
		}
		http.Error(w, "receiver down", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	s.adminJSON(t, http.MethodPost, "/v1/destinations", map[string]any{"name": "crm-hook", "type": "webhook",
		"config": map[string]any{"url": ok.URL + "/kith"}, "events": true, "audiences": []string{"advertising_ok"}, "traits": []string{"churn_risk"},
		"mapping": map[string]any{"rename": map[string]string{"userId": "customer_id"}}}, http.StatusCreated, nil)
	s.adminJSON(t, http.MethodPost, "/v1/destinations", map[string]any{"name": "ads-sync", "type": "webhook",
		"config": map[string]any{"url": failing.URL + "/events", "timeout": "2s"}, "events": true, "consent": []string{"Advertising"}}, http.StatusCreated, nil)

	src := s.createSource(t, "browser-test")
	consent := func(granted bool) map[string]any {
		return map[string]any{"consent": map[string]any{"categoryPreferences": map[string]bool{"Advertising": granted}}}
	}
	s.mustSend(t, src.WriteKey, "/v1/batch", map[string]any{"batch": []map[string]any{
		{"type": "identify", "userId": "dest-a", "traits": map[string]any{"plan": "pro"}, "context": consent(true)},
		{"type": "track", "userId": "dest-a", "event": "Order Completed", "properties": map[string]any{"order_id": "d1", "revenue": 42}, "context": consent(true)},
		{"type": "page", "userId": "dest-b", "name": "Home", "context": consent(true)},
		{"type": "track", "userId": "dest-c", "event": "Product Viewed", "context": consent(false)},
	}})

	type account struct {
		Delivered    int64            `json:"delivered"`
		Pending      int64            `json:"pending"`
		Retrying     int64            `json:"retrying"`
		DeadLettered int64            `json:"dead_lettered"`
		FilteredBy   map[string]int64 `json:"filteredBy"`
		Worker       struct {
			Attempts []struct{ Status int } `json:"attempts"`
		} `json:"worker"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var crm, ads account
		s.adminJSON(t, http.MethodGet, "/v1/destinations/crm-hook", nil, http.StatusOK, &crm)
		s.adminJSON(t, http.MethodGet, "/v1/destinations/ads-sync", nil, http.StatusOK, &ads)
		if crm.Delivered >= 4 && ads.Retrying >= 1 && ads.DeadLettered >= 1 && ads.FilteredBy["consent"] >= 1 && len(ads.Worker.Attempts) >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destinations did not get their requests in a minute: crm-hook %+v, ads-sync %+v", crm, ads)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// consoleErasure erases dest-c, whose event crm-hook received (ads-sync
// left it out for want of consent), and waits until the erasure is
// finished and crm-hook has acknowledged the deletion.
func consoleErasure(t *testing.T, s *server) {
	t.Helper()
	var era struct {
		ID string `json:"id"`
	}
	s.adminJSON(t, http.MethodPost, "/v1/privacy/erasures", map[string]any{"identifier": "user_id:dest-c"}, http.StatusAccepted, &era)
	deadline := time.Now().Add(time.Minute)
	for {
		var got struct {
			Status       string `json:"status"`
			Destinations []struct {
				Name, Status string
			} `json:"destinations"`
		}
		s.adminJSON(t, http.MethodGet, "/v1/privacy/erasures/"+era.ID, nil, http.StatusOK, &got)
		if got.Status == "finished" && len(got.Destinations) == 1 && got.Destinations[0].Name == "crm-hook" && got.Destinations[0].Status == "sent" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the erasure of dest-c: %+v, want finished with its deletion sent to crm-hook alone", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
