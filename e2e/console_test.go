package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
// audience in the builder and see its size. Screenshots of the overview and
// a 360 page are saved to KITH_ARTIFACTS (default: artifacts/ in the
// repository), to be looked at.
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
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
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
	for name, png := range map[string][]byte{"console-overview.png": overview, "console-customer.png": customer, "console-insights.png": insightsShot} {
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
