package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/kithcdp/kith/loadgen"
)

// runAsKithEnv makes this test binary act as the kith binary (the soak
// test runs it as `kith serve` in a child process it can kill).
const runAsKithEnv = "KITH_TEST_RUN_AS_KITH"

func init() {
	if os.Getenv(runAsKithEnv) != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kith:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestBenchSoak runs `kith bench soak` for 15 seconds with a kill every 5
// seconds and a full disk every 7, and checks that it found every
// acknowledged event stored exactly once and the accounting adding up.
func TestBenchSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15-second soak")
	}
	t.Setenv(runAsKithEnv, "1") // for the server processes
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"bench", "soak", "--kith", os.Args[0], "--minutes", "0.25", "--rate", "500",
		"--kill-every", "5s", "--disk-full-every", "7s", "--disk-full-for", "2s", "--progress-every", "5s", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("kith bench soak: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	var rep loadgen.SoakReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	t.Logf("progress:\n%s", errOut.String())
	if !rep.OK() || rep.Kills != 3 || len(rep.DiskFull) != 2 || rep.Missing != 0 || rep.Repeated != 0 || rep.Foreign != 0 {
		t.Fatalf("report: %+v", rep)
	}
	if rep.EventsAcked != rep.EventsSent || rep.Stored != rep.Final.Accepted || rep.Stored < rep.EventsAcked || rep.AccountingChecks != 5 {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.Contains(errOut.String(), "kill 3: restarted") {
		t.Errorf("progress names no third kill:\n%s", errOut.String())
	}
}

func TestBenchSoakErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--restart-postgres-every", "1m"}, "needs --postgres"},
		{[]string{"--postgres", "postgres://x", "--restart-postgres-every", "1m"}, "needs --postgres-restart-command"},
		{[]string{"--postgres", "postgres://x", "--disk-full-every", "1m"}, "embedded store only"},
		{[]string{"--minutes", "0"}, "must be positive"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"bench", "soak"}, tc.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kith bench soak %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
