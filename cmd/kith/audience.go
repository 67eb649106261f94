package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"github.com/kithcdp/kith"
)

const audienceUsage = `Usage:
  kith audience create KEY 'DEFINITION'    e.g. 'count(event "Order Completed" within 90d) >= 2'
  kith audience update KEY 'DEFINITION'    change it (members are re-evaluated in the background)
  kith audience list                       keys, sizes, backfill progress
  kith audience show KEY                   the definition (text and JSON) with its size
  kith audience members KEY [--limit N] [--next CURSOR]
  kith audience dry-run 'DEFINITION' [--sample N]
                                           size and a sample without saving
  kith audience changes [--audience KEY] [--profile REF] [--after SEQ]
                                           entries and exits (the change stream)
  kith audience delete KEY
  kith computed-trait create|update KEY 'AGGREGATE'
                                           e.g. 'sum(properties.revenue of event "Order Completed" within 365d)'
  kith computed-trait list|show|delete [KEY]
`

func runDefinitions(ctx context.Context, kind string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, audienceUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("kith "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	limit := fs.Int("limit", 100, "members per page")
	cur := fs.String("next", "", "continue a member list from the cursor.next of the previous page")
	sample := fs.Int("sample", 10, "sample size of a dry run")
	aud := fs.String("audience", "", "only this audience's changes")
	prof := fs.String("profile", "", "only this profile's changes")
	after := fs.Int64("after", 0, "changes after this seq")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	base := "/v1/audiences"
	if kind == kith.KindComputedTrait {
		base = "/v1/computed-traits"
	}
	one := func() (string, error) {
		if len(pos) != 1 {
			return "", errors.New("give one key")
		}
		return pos[0], nil
	}
	switch args[0] {
	case "create", "update":
		if len(pos) != 2 {
			return errors.New("give a key and a definition")
		}
		var out map[string]any
		method, path := "POST", base
		body := map[string]string{"key": pos[0], "definition": pos[1]}
		if args[0] == "update" {
			method, path = "PUT", base+"/"+url.PathEscape(pos[0])
		}
		if err := c.do(ctx, method, path, body, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "list":
		var resp struct {
			Data []struct {
				kith.Definition
				Size *int64 `json:"size"`
			} `json:"data"`
		}
		if err := c.do(ctx, "GET", base, nil, &resp); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tSIZE\tBACKFILL\tDEFINITION")
		for _, d := range resp.Data {
			size := "-"
			if d.Size != nil {
				size = fmt.Sprint(*d.Size)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s %d/%d\t%s\n", d.Key, size, d.Backfill.State, d.Backfill.Done, d.Backfill.Total, d.Text)
		}
		return tw.Flush()
	case "show", "members", "delete":
		key, err := one()
		if err != nil {
			return err
		}
		path := base + "/" + url.PathEscape(key)
		var out map[string]any
		switch args[0] {
		case "delete":
			if err := c.do(ctx, "DELETE", path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted %s\n", key)
			return nil
		case "members":
			if kind != kith.KindAudience {
				break
			}
			q := url.Values{"limit": {fmt.Sprint(*limit)}}
			if *cur != "" {
				q.Set("next", *cur)
			}
			path += "/members?" + q.Encode()
		}
		if err := c.do(ctx, "GET", path, nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "dry-run":
		if kind != kith.KindAudience || len(pos) != 1 {
			return errors.New("give one audience definition")
		}
		var out map[string]any
		if err := c.do(ctx, "POST", base+"/dry-run", map[string]any{"definition": pos[0], "sample": *sample}, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "changes":
		q := url.Values{"after": {fmt.Sprint(*after)}, "limit": {fmt.Sprint(*limit)}}
		if *aud != "" {
			q.Set("audience", *aud)
		}
		if *prof != "" {
			q.Set("profile", *prof)
		}
		var out map[string]any
		if err := c.do(ctx, "GET", "/v1/audience-changes?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	}
	fmt.Fprint(stderr, audienceUsage)
	return fmt.Errorf("unknown command %q", args[0])
}
