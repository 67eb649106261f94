// Command kith is Kith's single binary: `kith serve` runs the platform;
// the other commands are clients of a running server's admin API, so they
// work while it runs.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/kithcdp/kith"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

const usage = `kith — a customer data platform

Usage:
  kith serve [--data DIR] [--addr HOST:PORT] [--postgres URL]
  kith demo [--data DIR] [--addr HOST:PORT] [--customers N] [--seed S]
                                 load a realistic multi-channel demo dataset, then serve
  kith source create NAME        create a source and print its write key once
  kith source list
  kith source disable|enable ID
  kith token create NAME [--scopes '...'] | list | revoke ID
  kith stats                     per-source accounting
  kith privacy erase|status|list|export
                                 erasure with suppression, data-subject export (kith privacy)
  kith compact --data DIR        (server stopped) purge erased data from the files
  kith backup --out FILE [--data DIR]
                                 consistent backup of the embedded store, while it serves
  kith restore --in FILE [--data DIR] [--force]
                                 (server stopped) restore a backup; profiles are rebuilt
  kith audit [--by TOKEN_ID] [--action ROUTE] [--target T]
                                 the audit log of admin actions
  kith profile merges|merge|unmerge|detach REF
                                 merge evidence; join or split profiles (kith profile)
  kith match                      probabilistic matching: link sure duplicates, queue the rest
  kith review list|show|accept|reject
                                 probabilistic matching's review queue
  kith audience create|update|list|show|members|dry-run|changes|delete
                                 audiences, kept current as events arrive (kith audience)
  kith computed-trait create|update|list|show|delete
                                 traits computed from events (counts, sums, last values, ...)
  kith insights run|runs|show|validate|fit|rfm
                                 churn risk, CLV, RFM, cross-sell (kith insights help)
  kith import --source NAME --mapping FILE [--rejects FILE] INPUT...
                                 import CSV / JSON Lines files (kith import -h)
  kith dmp import|export|show     third-party audiences in, look-alike seeds out (kith dmp)
  kith destination create|list|show|test|pause|resume|deliveries|replay|delete
                                 where events and audience changes are delivered (kith destination)
  kith bench ingest|import|insights|soak [flags]
                                 benchmarks (see kith bench ingest -h); soak: load
                                 with kill -9 and other faults, then every ack checked

Client commands talk to a running server: --server URL (env KITH_SERVER,
default http://127.0.0.1:8080) and --token TOKEN (env KITH_TOKEN, else
KITH_ADMIN_TOKEN).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kith:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve", "bench", "demo":
		tuneRuntime()
	}
	switch args[0] {
	case "serve":
		cfg, err := ParseServeFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		s := &Server{Config: cfg}
		if err := s.Open(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return s.Close()
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "source":
		return runSource(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "stats":
		return runStats(ctx, args[1:], stdout, stderr)
	case "insights":
		return runInsights(ctx, args[1:], stdout, stderr)
	case "profile":
		return runProfile(ctx, args[1:], stdout, stderr)
	case "review":
		return runReview(ctx, args[1:], stdout, stderr)
	case "audience":
		return runDefinitions(ctx, kith.KindAudience, args[1:], stdout, stderr)
	case "computed-trait":
		return runDefinitions(ctx, kith.KindComputedTrait, args[1:], stdout, stderr)
	case "match":
		return runMatch(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "dmp":
		return runDMP(ctx, args[1:], stdout, stderr)
	case "destination":
		return runDestination(ctx, args[1:], stdout, stderr)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "privacy":
		return runPrivacy(ctx, args[1:], stdout, stderr)
	case "compact":
		return runCompact(ctx, args[1:], stdout, stderr)
	case "backup":
		return runBackup(ctx, args[1:], stdout, stderr)
	case "restore":
		return runRestore(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// tuneRuntime adjusts the Go runtime for serving, unless the environment
// says otherwise: the ingest path allocates per message, so the collector
// runs a quarter as often as Go's default while the heap is small, and as
// often as it must to keep the heap under a soft limit (GOMEMLIMIT,
// default defaultMemoryLimit) when it is not: without the limit, GOGC=400
// let a server whose live heap was 600 MB grow to 6.9 GiB resident.
// (GOMAXPROCS depends on the store; see Server.Open.)
func tuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT sets one. The embedded store's page caches (at most 260 MiB)
// are outside it. Below the live heap plus the collector's working room
// it costs CPU: at 1,000,000 people, 640 MiB spent 59% of the CPU
// collecting and processed a third as fast (BENCHMARKS.md).
const defaultMemoryLimit = 1 << 30

// client calls a running server's admin API.
type client struct {
	server, token string
	http          *http.Client
}

func defaultHTTPClient() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

func clientFlags(fs *flag.FlagSet) *client {
	c := &client{http: defaultHTTPClient()}
	fs.StringVar(&c.server, "server", envOr("KITH_SERVER", "http://127.0.0.1:8080"), "server URL (env KITH_SERVER)")
	fs.StringVar(&c.token, "token", envOr("KITH_TOKEN", os.Getenv("KITH_ADMIN_TOKEN")), "admin token (env KITH_TOKEN or KITH_ADMIN_TOKEN)")
	return c
}

// apiError is an answer of 300 or above, with the API's error code and
// message when it gave them.
type apiError struct {
	Status        int
	Code, Message string
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("server answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// send sends a request with the client's token and returns the answer
// when its status is below 300; the caller closes its body. Any other
// answer becomes an *apiError, no answer at all an error naming the
// server.
func (c *client) send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the server at %s (is `kith serve` running?): %w", c.server, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	json.Unmarshal(data, &e)
	return nil, &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
}

// do sends a JSON request and decodes a JSON answer, turning API errors
// into readable ones.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, rd, "application/json")
	var ae *apiError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runSource(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: kith source create NAME | list | disable ID | enable ID")
	}
	fs := flag.NewFlagSet("kith source "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch args[0] {
	case "create":
		if len(pos) != 1 {
			return fmt.Errorf("usage: kith source create NAME")
		}
		var out struct{ ID, Name, WriteKey string }
		if err := c.do(ctx, "POST", "/v1/sources", map[string]string{"name": pos[0]}, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "source %s (%s) created\nwrite key: %s\nThe write key is shown only now; store it safely.\n", out.Name, out.ID, out.WriteKey)
		return nil
	case "list":
		var out struct {
			Data []struct {
				ID, Name  string
				Disabled  bool
				CreatedAt time.Time
			}
		}
		if err := c.do(ctx, "GET", "/v1/sources", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATE\tCREATED")
		for _, s := range out.Data {
			state := "enabled"
			if s.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, s.Name, state, s.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "disable", "enable":
		if len(pos) != 1 {
			return fmt.Errorf("usage: kith source %s ID", args[0])
		}
		if err := c.do(ctx, "PATCH", "/v1/sources/"+url.PathEscape(pos[0]), map[string]bool{"disabled": args[0] == "disable"}, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "source %s %sd\n", pos[0], args[0])
		return nil
	}
	return fmt.Errorf("unknown source command %q", args[0])
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: kith token create NAME [--scopes 'SCOPE ...'] | list | revoke ID"
	if len(args) == 0 {
		return fmt.Errorf(usage)
	}
	fs := flag.NewFlagSet("kith token "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	scopes := fs.String("scopes", "admin", "space-separated scopes: "+strings.Join(kith.Scopes, " "))
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case args[0] == "create" && len(pos) == 1:
		var out struct {
			ID, Name, Token string
			Scopes          []string
		}
		if err := c.do(ctx, "POST", "/v1/tokens", map[string]any{"name": pos[0], "scopes": strings.Fields(*scopes)}, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s (%s) created with scopes %s\ntoken: %s\nThe token is shown only now; store it safely.\n", out.Name, out.ID, strings.Join(out.Scopes, " "), out.Token)
		return nil
	case args[0] == "list" && len(pos) == 0:
		var out struct{ Data []kith.Token }
		if err := c.do(ctx, "GET", "/v1/tokens", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED")
		for _, t := range out.Data {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Name, strings.Join(t.Scopes, " "), t.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case args[0] == "revoke" && len(pos) == 1:
		if err := c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
		return nil
	}
	return fmt.Errorf(usage)
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var st struct {
		Sources []struct {
			ID, Name                                 string
			Received, Accepted, Duplicate, Processed int64
			Rejected                                 map[string]int64
		}
		Totals struct {
			Received, Accepted, Duplicate, Processed int64
			Rejected                                 map[string]int64
		}
		Backlog int64
		Refused map[string]int64
	}
	if *asJSON {
		var raw json.RawMessage
		if err := c.do(ctx, "GET", "/v1/stats", nil, &raw); err != nil {
			return err
		}
		_, err := fmt.Fprintln(stdout, string(raw))
		return err
	}
	if err := c.do(ctx, "GET", "/v1/stats", nil, &st); err != nil {
		return err
	}
	rejected := func(m map[string]int64) (int64, string) {
		var n int64
		var parts []string
		for k, v := range m {
			n += v
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(parts)
		return n, strings.Join(parts, " ")
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tNAME\tRECEIVED\tACCEPTED\tDUPLICATE\tREJECTED\tPROCESSED\t")
	for _, s := range st.Sources {
		n, _ := rejected(s.Rejected)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", s.ID, s.Name, s.Received, s.Accepted, s.Duplicate, n, s.Processed)
	}
	n, detail := rejected(st.Totals.Rejected)
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t\n", st.Totals.Received, st.Totals.Accepted, st.Totals.Duplicate, n, st.Totals.Processed)
	if err := tw.Flush(); err != nil {
		return err
	}
	if detail != "" {
		fmt.Fprintf(stdout, "rejected by reason: %s\n", detail)
	}
	fmt.Fprintf(stdout, "backlog (accepted, not yet processed): %d\n", st.Backlog)
	if st.Totals.Received != st.Totals.Accepted+st.Totals.Duplicate+n {
		return fmt.Errorf("accounting does not add up: received %d != accepted %d + duplicate %d + rejected %d",
			st.Totals.Received, st.Totals.Accepted, st.Totals.Duplicate, n)
	}
	return nil
}
