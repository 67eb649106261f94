package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/mappings"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

const importUsage = `Usage: kith import --source NAME --mapping FILE|NAME [--rejects FILE] INPUT...

Imports CSV or JSON Lines files (gzip-compressed or not) into a source of a
running server, mapping their columns to Segment messages with a mapping
file. Ready-made mappings: %s (see the mappings directory).

Every row is accepted or written to the rejects file with its line number
and reason (a row longer than 1 MiB is rejected too). Importing the same
file again stores nothing twice; an interrupted import continues where it
stopped when run again. While an import runs, another with the same
rejects file (the same input, from the same directory) is refused.

Flags:
`

// runImport is `kith import`.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	source := fs.String("source", "", "source (channel) name; created if it does not exist and the token may create sources (sources:write)")
	mappingArg := fs.String("mapping", "", "mapping file, or the name of a ready-made mapping")
	rejectsPath := fs.String("rejects", "", "rejects file (default: <first input>.rejects.csv in the current directory)")
	batchSize := fs.Int("batch", 500, "messages per request")
	restart := fs.Bool("restart", false, "start from the beginning even if an interrupted import of the same files can be resumed")
	progress := fs.String("progress", "auto", "progress display: bar, lines, none, or auto (a bar on a terminal, else lines)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, importUsage, strings.Join(mappings.Names(), ", "))
		fs.PrintDefaults()
	}
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *source == "" || *mappingArg == "" || len(paths) == 0 {
		fs.Usage()
		return fmt.Errorf("kith import needs --source, --mapping and at least one input file")
	}
	m, err := loadMapping(*mappingArg)
	if err != nil {
		return err
	}
	inputs := make([]imports.Input, len(paths))
	for i, p := range paths {
		if inputs[i], err = imports.FileInput(p); err != nil {
			return err
		}
	}
	if *rejectsPath == "" {
		base := filepath.Base(paths[0])
		for _, ext := range []string{".gz", ".csv", ".jsonl", ".ndjson", ".json", ".tsv", ".txt"} {
			base = strings.TrimSuffix(base, ext)
		}
		*rejectsPath = base + ".rejects.csv"
	}
	show := newImportProgress(*progress, stderr)
	run := &imports.Runner{
		Source:      *source,
		Mapping:     m,
		Sink:        &httpImportSink{c: c, source: *source},
		RejectsPath: *rejectsPath,
		StatePath:   *rejectsPath + ".resume",
		Restart:     *restart,
		BatchSize:   *batchSize,
		OnProgress:  show.update,
		OnResume: func(file string, line int) {
			fmt.Fprintf(stderr, "resuming an interrupted import of %s after line %d\n", file, line)
		},
	}
	started := time.Now()
	sum, err := run.Run(ctx, inputs)
	show.finish()
	if err != nil {
		if sum.Read > 0 {
			fmt.Fprintf(stderr, "stopped after %d rows (%d accepted, %d rejected); run the same command again to resume\n", sum.Read, sum.Accepted, sum.Rejected)
		}
		return err
	}
	el := time.Since(started)
	for _, reason := range sortedKeys(sum.Reasons) {
		fmt.Fprintf(stdout, "  rejected %-22s %d\n", reason, sum.Reasons[reason])
	}
	if sum.Rejected > 0 {
		fmt.Fprintf(stdout, "rejected rows are in %s\n", *rejectsPath)
	}
	fmt.Fprintf(stdout, "imported into source %q in %s (%.0f rows/s)\n", *source, el.Round(time.Millisecond), float64(sum.Read)/max(el.Seconds(), 1e-9))
	fmt.Fprintf(stdout, "read=%d accepted=%d rejected=%d already_imported=%d messages=%d\n", sum.Read, sum.Accepted, sum.Rejected, sum.Duplicates, sum.Messages)
	return nil
}

// loadMapping reads a mapping file, or a ready-made mapping by name.
func loadMapping(arg string) (*imports.Mapping, error) {
	if _, err := os.Stat(arg); err == nil {
		return imports.LoadMapping(arg)
	}
	if b, err := mappings.Mapping(arg); err == nil {
		return imports.ParseMapping(b)
	}
	return nil, fmt.Errorf("mapping %q is neither a file nor a ready-made mapping (%s)", arg, strings.Join(mappings.Names(), ", "))
}

func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// httpImportSink sends batches to POST /v1/imports/batch, retrying while
// the server is busy or unreachable: messages carry deterministic ids, so
// a batch sent twice is stored once.
type httpImportSink struct {
	c      *client
	source string
}

func (h *httpImportSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]imports.Outcome, error) {
	body, err := json.Marshal(map[string]any{"source": h.source, "batch": msgs, "rejected": rejected})
	if err != nil {
		return nil, err
	}
	var resp struct {
		Results []imports.Outcome `json:"results"`
	}
	wait := 200 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err = h.post(ctx, body, &resp)
		var busy *retryable
		if err == nil || !errors.As(err, &busy) || time.Now().After(deadline) {
			return resp.Results, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryable is an answer worth retrying: overloaded, a server error, no
// connection.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

func (h *httpImportSink) post(ctx context.Context, body []byte, out any) error {
	resp, err := h.c.send(ctx, http.MethodPost, "/v1/imports/batch", bytes.NewReader(body), "application/json")
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		if ae.Status == http.StatusTooManyRequests || ae.Status >= 500 {
			return &retryable{err}
		}
		return err
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &retryable{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &retryable{err}
	}
	return json.Unmarshal(data, out)
}

// importProgress shows an import's progress: a bar with rate and ETA on a
// terminal, a plain line every few seconds otherwise.
type importProgress struct {
	mode    string
	w       io.Writer
	bar     *progressbar.ProgressBar
	started time.Time
	last    time.Time
	final   imports.Progress
}

func newImportProgress(mode string, w io.Writer) *importProgress {
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	return &importProgress{mode: mode, w: w, started: time.Now(), last: time.Now()}
}

func (p *importProgress) update(pr imports.Progress) {
	p.final = pr
	rate := float64(pr.Summary.Read) / max(time.Since(p.started).Seconds(), 1e-9)
	switch p.mode {
	case "bar":
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(max(pr.Total, 1),
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
				progressbar.OptionFullWidth(),
			)
		}
		p.bar.Describe(fmt.Sprintf("%s: %d rows (%.0f/s), %d rejected", filepath.Base(pr.File), pr.Summary.Read, rate, pr.Summary.Rejected))
		_ = p.bar.Set64(pr.Done)
	case "lines":
		if time.Since(p.last) < 5*time.Second {
			return
		}
		p.last = time.Now()
		eta := ""
		if pr.Total > 0 && pr.Done > 0 {
			left := time.Duration(float64(time.Since(p.started)) * float64(pr.Total-pr.Done) / float64(pr.Done))
			eta = fmt.Sprintf(", %.0f%%, about %s left", 100*float64(pr.Done)/float64(pr.Total), left.Round(time.Second))
		}
		fmt.Fprintf(p.w, "%s: %d rows read (%.0f/s), %d accepted, %d rejected%s\n",
			filepath.Base(pr.File), pr.Summary.Read, rate, pr.Summary.Accepted, pr.Summary.Rejected, eta)
	}
}

func (p *importProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
