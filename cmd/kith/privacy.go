package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith/sqlite"
)

const privacyUsage = `Usage:
  kith privacy erase IDENTIFIER [--suppress] [--wait]
      erase the person an identifier (email:ada@example.com, user_id:u-42, ...)
      belongs to: events, profile, traits, audiences, insights, third-party
      audiences; --suppress drops their later events at ingest
  kith privacy status ID         an erasure's status and counts
  kith privacy list              the latest erasure requests
  kith privacy export REF [--out FILE]
      everything held about a person, as one JSON document
  kith compact --data DIR        (server stopped) rewrite the embedded store's
      files so that erased data leaves no trace on disk
`

type erasureView struct {
	ID, Status, IdentifierType, Error string
	Suppress                          bool
	CreatedAt, FinishedAt             time.Time
	Counts                            map[string]int64
}

func runPrivacy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, privacyUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("kith privacy "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	suppress := fs.Bool("suppress", false, "keep the identifiers as keyed hashes and drop later events carrying them")
	wait := fs.Bool("wait", false, "wait until the erasure has finished")
	out := fs.String("out", "", "export: write the document to this file")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	show := func(e erasureView) {
		fmt.Fprintf(stdout, "erasure %s: %s (identifier type %s, suppress %v)\n", e.ID, e.Status, e.IdentifierType, e.Suppress)
		keys := make([]string, 0, len(e.Counts))
		for k := range e.Counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "  %-24s %d\n", k, e.Counts[k])
		}
		if e.Error != "" {
			fmt.Fprintf(stdout, "  error: %s\n", e.Error)
		}
	}
	switch {
	case args[0] == "erase" && len(pos) == 1:
		var e erasureView
		if err := c.do(ctx, "POST", "/v1/privacy/erasures", map[string]any{"identifier": pos[0], "suppress": *suppress}, &e); err != nil {
			return err
		}
		for *wait && (e.Status == "accepted" || e.Status == "running") {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			if err := c.do(ctx, "GET", "/v1/privacy/erasures/"+e.ID, nil, &e); err != nil {
				return err
			}
		}
		show(e)
		if e.Status == "failed" {
			return fmt.Errorf("erasure %s failed: %s", e.ID, e.Error)
		}
		return nil
	case args[0] == "status" && len(pos) == 1:
		var e erasureView
		if err := c.do(ctx, "GET", "/v1/privacy/erasures/"+url.PathEscape(pos[0]), nil, &e); err != nil {
			return err
		}
		show(e)
		return nil
	case args[0] == "list" && len(pos) == 0:
		var res struct{ Data []erasureView }
		if err := c.do(ctx, "GET", "/v1/privacy/erasures", nil, &res); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tTYPE\tSUPPRESS\tREQUESTED")
		for _, e := range res.Data {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", e.ID, e.Status, e.IdentifierType, e.Suppress, e.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case args[0] == "export" && len(pos) == 1:
		var doc json.RawMessage
		if err := c.do(ctx, "GET", "/v1/privacy/profiles/"+url.PathEscape(pos[0])+"/export", nil, &doc); err != nil {
			return err
		}
		if *out == "" {
			_, err := stdout.Write(append(doc, '\n'))
			return err
		}
		if err := os.WriteFile(*out, doc, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", *out, len(doc))
		return nil
	}
	fmt.Fprint(stderr, privacyUsage)
	return fmt.Errorf("unknown or incomplete privacy command")
}

// runCompact is `kith compact --data DIR`, offline.
func runCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith compact", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", envOr("KITH_DATA", "./kith-data"), "data directory of the embedded store (the server must be stopped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sizes, err := sqlite.Compact(ctx, *dir)
	if err != nil {
		return err
	}
	for _, name := range sqlite.Files {
		if s, ok := sizes[name]; ok {
			fmt.Fprintf(stdout, "%-14s %10d → %10d bytes\n", name, s[0], s[1])
		}
	}
	fmt.Fprintln(stdout, "compacted: deleted data no longer remains in the files")
	return nil
}
