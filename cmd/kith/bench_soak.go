package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/loadgen"
	"github.com/kithcdp/kith/postgres"
	"github.com/kithcdp/kith/sqlite"
)

const soakUsage = `usage: kith bench soak [--minutes N] [--kill-every D] [--rate R] [flags]

Runs kith serve as a child process and offers it a steady load (realistic
Segment batches, each retried until acknowledged, as SDKs do) for --minutes,
while killing it with SIGKILL and restarting it every --kill-every; with
--postgres, optionally restarting PostgreSQL every --restart-postgres-every
(with --postgres-restart-command); on the embedded store, optionally
making its disk full every --disk-full-every for --disk-full-for (Linux:
every file the server writes is capped with RLIMIT_FSIZE at 1 MiB above the
log's write-ahead log, so writes to the database files fail at once and
appends soon after, as on a full disk; then the cap is lifted and the
server must recover without a restart).

At the end the server catches up and is stopped, the store is read
directly, and the run passes only if every acknowledged messageId is stored
exactly once, nothing foreign is stored, the source's accounting adds up
(received = accepted + duplicate + rejected + suppressed), processed caught
up with accepted, and accepted equals the events stored. Progress goes to
standard error, the report to standard output; the exit status is 1 if
anything was wrong.

Flags:
`

// benchSoak implements `kith bench soak`.
func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), soakUsage)
		fs.PrintDefaults()
	}
	minutes := fs.Float64("minutes", 30, "how long the load is offered")
	killEvery := fs.Duration("kill-every", 90*time.Second, "kill the server with SIGKILL and restart it this often (0: never)")
	rate := fs.Float64("rate", 2000, "offered load in events/s (open loop)")
	batch := fs.Int("batch", 50, "events per request")
	concurrency := fs.Int("concurrency", 8, "parallel senders")
	users := fs.Int("users", loadgen.DefaultUsers, "distinct people in the generated traffic")
	seed := fs.Int64("seed", 0, "payload seed (0: random)")
	pg := fs.String("postgres", "", "run the server on this PostgreSQL database instead of the embedded store")
	pgEvery := fs.Duration("restart-postgres-every", 0, "restart PostgreSQL this often (needs --postgres and --postgres-restart-command; 0: never)")
	pgCmd := fs.String("postgres-restart-command", "", "shell command that restarts PostgreSQL, e.g. 'pg_ctl restart -D DIR'")
	diskEvery := fs.Duration("disk-full-every", 0, "make the embedded store's disk full this often (Linux; 0: never)")
	diskFor := fs.Duration("disk-full-for", 20*time.Second, "how long each full-disk episode lasts")
	data := fs.String("data", "", "embedded data directory (default: a fresh one in a temporary directory, removed after a passing run)")
	bin := fs.String("kith", "", "the kith binary to run as the server (default: this one)")
	serverLog := fs.String("server-log", "", "file for the output of every server run (default: server.log in the temporary directory)")
	progress := fs.Duration("progress-every", 30*time.Second, "interval of progress lines on standard error")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kith bench soak: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *minutes <= 0 || *rate <= 0:
		return fmt.Errorf("kith bench soak: --minutes and --rate must be positive")
	case *pgEvery > 0 && *pg == "":
		return fmt.Errorf("kith bench soak: --restart-postgres-every needs --postgres")
	case *pgEvery > 0 && *pgCmd == "":
		return fmt.Errorf("kith bench soak: --restart-postgres-every needs --postgres-restart-command (how PostgreSQL is restarted depends on how it is installed)")
	case *diskEvery > 0 && *pg != "":
		return fmt.Errorf("kith bench soak: --disk-full-every applies to the embedded store only")
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("kith bench soak: find this binary (use --kith): %w", err)
		}
		*bin = exe
	}

	work, err := os.MkdirTemp("", "kith-soak-")
	if err != nil {
		return fmt.Errorf("kith bench soak: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(work)
		}
	}()
	dir := *data
	if dir == "" {
		dir = filepath.Join(work, "data")
	}
	if *serverLog == "" {
		*serverLog = filepath.Join(work, "server.log")
	}
	logFile, err := os.OpenFile(*serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("kith bench soak: server log: %w", err)
	}
	defer logFile.Close()

	addr, err := freeLocalAddr()
	if err != nil {
		return err
	}
	token := kith.NewSecret("soak-")
	serveArgs := []string{"serve", "--data", dir, "--addr", addr}
	if *pg != "" {
		serveArgs = append(serveArgs, "--postgres", *pg)
	}
	// The server takes its store and token from the flags and this
	// environment only, never from KITH_* settings of the caller's.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, k := range []string{"KITH_POSTGRES_URL=", "KITH_ADMIN_TOKEN=", "KITH_DATA=", "KITH_ADDR="} {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	proc := &loadgen.Process{Path: *bin, Args: serveArgs, Env: append(env, "KITH_ADMIN_TOKEN="+token), Addr: addr, Log: logFile}
	defer proc.Kill() // after an error; a finished run has stopped it

	store := "embedded store in " + dir
	if *pg != "" {
		store = "PostgreSQL"
	}
	fmt.Fprintf(stderr, "kith bench soak: %s, server log %s\n", store, *serverLog)
	if err := proc.Start(ctx); err != nil {
		keep = true
		return fmt.Errorf("kith bench soak: start the server (its output is in %s): %w", *serverLog, err)
	}
	c := &client{server: "http://" + addr, token: token, http: defaultHTTPClient()}
	var src struct{ ID, WriteKey string }
	if err := c.do(ctx, "POST", "/v1/sources", map[string]string{"name": kith.NewID("soak-")}, &src); err != nil {
		return fmt.Errorf("kith bench soak: create the source: %w", err)
	}

	cfg := loadgen.SoakConfig{
		Target: "http://" + addr, WriteKey: src.WriteKey, AdminToken: token, SourceID: src.ID,
		Server: proc, Duration: time.Duration(*minutes * float64(time.Minute)),
		Rate: *rate, BatchSize: *batch, Concurrency: *concurrency, Users: *users, Seed: *seed,
		KillEvery: *killEvery, RestartPostgresEvery: *pgEvery,
		DiskFullEvery: *diskEvery, DiskFullFor: *diskFor, DiskFullSizeOf: filepath.Join(dir, "log.db-wal"),
		Progress: stderr, ProgressEvery: *progress,
		StoredIDs: func(ctx context.Context, fn func(string)) error {
			return storedIDs(ctx, dir, *pg, src.ID, fn)
		},
	}
	if *pgEvery > 0 {
		cfg.RestartPostgres = func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, "sh", "-c", *pgCmd).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w: %s", *pgCmd, err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	rep, err := loadgen.Soak(ctx, cfg)
	if err != nil {
		keep = true
		return fmt.Errorf("kith bench soak: %w (the data and the server log are kept in %s)", err, work)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "== kith soak (%s) ==\n%s", store, rep)
	}
	if !rep.OK() {
		keep = true
		return fmt.Errorf("kith bench soak: %d problems found (the data and the server log are kept in %s)", len(rep.Failures), work)
	}
	return nil
}

// storedIDs calls fn with the messageId of every event of source in the
// store (the server must be stopped for the embedded one).
func storedIDs(ctx context.Context, dir, pgURL, source string, fn func(string)) error {
	var st kith.Store
	var err error
	if pgURL != "" {
		st, err = postgres.Open(ctx, pgURL)
	} else {
		st, err = sqlite.Open(ctx, dir, sqlite.Options{})
	}
	if err != nil {
		return fmt.Errorf("open the store: %w", err)
	}
	defer st.Close()
	var after int64
	for {
		ms, err := st.ReadLog(ctx, after, 10000)
		if err != nil {
			return fmt.Errorf("read the log after %d: %w", after, err)
		}
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			if m.SourceID == source {
				fn(m.MessageID)
			}
		}
		after = ms[len(ms)-1].Seq
	}
}

// freeLocalAddr returns a loopback address with a port free right now.
func freeLocalAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
