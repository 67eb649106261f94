package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kithcdp/kith/dmp"
)

const dmpUsage = `Usage:
  kith dmp import --partner NAME [--format csv|jsonl] FILE...
      import third-party audiences: rows of id_type (cookie, maid,
      email_sha256), id, audiences (separated by |) and expires_at
      (default: 90 days); ids no profile has are counted, not stored
  kith dmp export --audience KEY --platform meta|google [--out FILE]
      write the audience's look-alike seed file: hashed e-mail and phone
      of members whose consent allows Advertising
  kith dmp show REF
      a profile's unexpired third-party audiences
`

func runDMP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dmpUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("kith dmp "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	switch args[0] {
	case "import":
		partner := fs.String("partner", "", "the DMP's name (provenance of the audiences)")
		format := fs.String("format", "", "csv or jsonl (default: from the file name)")
		files, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if *partner == "" || len(files) == 0 {
			return fmt.Errorf("usage: kith dmp import --partner NAME FILE...")
		}
		for _, f := range files {
			if err := dmpImportFile(ctx, c, *partner, *format, f, stdout); err != nil {
				return err
			}
		}
		return nil
	case "export":
		key := fs.String("audience", "", "audience key")
		platform := fs.String("platform", "", "meta or google")
		out := fs.String("out", "", "output file (default: KEY-PLATFORM-seeds.csv)")
		minSize := fs.Int("min-size", 0, "refuse below this many people (at least the server's minimum)")
		if _, err := parseInterspersed(fs, args[1:]); err != nil {
			return err
		}
		if *key == "" || *platform == "" {
			return fmt.Errorf("usage: kith dmp export --audience KEY --platform meta|google [--out FILE]")
		}
		if *out == "" {
			*out = *key + "-" + *platform + "-seeds.csv"
		}
		q := url.Values{"platform": {*platform}}
		if *minSize > 0 {
			q.Set("min_size", fmt.Sprint(*minSize))
		}
		return dmpExport(ctx, c, "/v1/audiences/"+url.PathEscape(*key)+"/seeds?"+q.Encode(), *out, stdout)
	case "show":
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("usage: kith dmp show REF")
		}
		var res struct {
			Data []struct {
				Partner, Audience, IDType, ExpiresAt, ImportedAt string
			} `json:"data"`
		}
		if err := c.do(ctx, "GET", "/v1/profiles/"+url.PathEscape(pos[0])+"/dmp-audiences", nil, &res); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTNER\tAUDIENCE\tMATCHED BY\tEXPIRES")
		for _, a := range res.Data {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Partner, a.Audience, a.IDType, a.ExpiresAt)
		}
		return tw.Flush()
	}
	fmt.Fprint(stderr, dmpUsage)
	return fmt.Errorf("unknown dmp command %q", args[0])
}

func dmpImportFile(ctx context.Context, c *client, partner, format, path string, stdout io.Writer) error {
	if format == "" {
		format = dmp.FormatCSV
		if n := strings.TrimSuffix(strings.ToLower(path), ".gz"); strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".ndjson") {
			format = dmp.FormatJSONL
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	q := url.Values{"partner": {partner}, "format": {format}}
	resp, err := c.send(ctx, "POST", "/v1/dmp/audiences?"+q.Encode(), f, "")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	var res struct {
		Summary dmp.ImportSummary `json:"summary"`
		Rejects []dmp.RowError    `json:"rejects"`
		More    bool              `json:"rejectsTruncated"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	for _, r := range res.Rejects {
		fmt.Fprintf(stdout, "  line %d: %s: %s\n", r.Line, r.Reason, r.Message)
	}
	if res.More {
		fmt.Fprintln(stdout, "  (more rejected rows not listed)")
	}
	s := res.Summary
	for _, a := range s.SortedAudiences() {
		fmt.Fprintf(stdout, "  audience %-30s %d matched\n", a, s.Audiences[a])
	}
	fmt.Fprintf(stdout, "%s: read=%d matched=%d unmatched=%d rejected=%d\n", filepath.Base(path), s.Read, s.Matched, s.Unmatched, s.Rejected)
	return nil
}

func dmpExport(ctx context.Context, c *client, path, out string, stdout io.Writer) error {
	resp, err := c.send(ctx, "GET", path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp := out + ".part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	h := resp.Header
	fmt.Fprintf(stdout, "wrote %s (%d bytes): members=%s exported=%s filtered_by_consent=%s no_contact=%s\n", out, n,
		h.Get("X-Kith-Members"), h.Get("X-Kith-Exported"), h.Get("X-Kith-Filtered-By-Consent"), h.Get("X-Kith-No-Contact"))
	return nil
}
