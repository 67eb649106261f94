package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith"
)

const profileUsage = `Usage:
  kith profile merges REF                            a profile's merges with their evidence
  kith profile unmerge REF --merge ID --reason TEXT  undo one of them
  kith profile merge REF --with REF2 --reason TEXT   join two profiles no event links
  kith profile detach REF --identifier T:V --reason TEXT
                                                     remove an identifier (it identifies no one after)
REF is a profile id or type:value (user_id:u-42, email:ada@example.com).
`

func runProfile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, profileUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("kith profile "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	mergeID := fs.String("merge", "", "merge id (from kith profile merges)")
	reason := fs.String("reason", "", "why (recorded)")
	with := fs.String("with", "", "the other profile (merge)")
	ident := fs.String("identifier", "", "type:value (detach)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, profileUsage)
		return errors.New("give one profile reference")
	}
	ref := url.PathEscape(pos[0])
	switch args[0] {
	case "merges":
		var resp struct {
			Data []kith.Merge `json:"data"`
		}
		if err := c.do(ctx, "GET", "/v1/profiles/"+ref+"/merges?limit=1000", nil, &resp); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSURVIVOR\tABSORBED\tVIA\tEVENT\tSOURCE\tAT")
		for _, m := range resp.Data {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%s\t%s\t%s\t%s\n", m.ID, m.Survivor, m.Absorbed, m.IdentType, m.Ident, m.MessageID, m.SourceID, m.At.Format(time.RFC3339))
		}
		return tw.Flush()
	case "merge":
		if *with == "" || *reason == "" {
			return errors.New("--with and --reason are required")
		}
		var res struct {
			Profile string     `json:"profile"`
			Merge   kith.Merge `json:"merge"`
		}
		if err := c.do(ctx, "POST", "/v1/profiles/"+ref+"/merge", map[string]string{"with": *with, "reason": *reason}, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "merged into %s (merge %s)\n", res.Profile, res.Merge.ID)
		return nil
	case "detach":
		if *ident == "" || *reason == "" {
			return errors.New("--identifier and --reason are required")
		}
		var res struct {
			Profiles []string `json:"profiles"`
		}
		if err := c.do(ctx, "POST", "/v1/profiles/"+ref+"/identities/detach", map[string]string{"identifier": *ident, "reason": *reason}, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "detached; the profile is now %d profile(s): %v\n", len(res.Profiles), res.Profiles)
		return nil
	case "unmerge":
		if *mergeID == "" || *reason == "" {
			return errors.New("--merge and --reason are required")
		}
		var res struct {
			Profiles []string   `json:"profiles"`
			Split    kith.Split `json:"split"`
		}
		if err := c.do(ctx, "POST", "/v1/profiles/"+ref+"/unmerge", map[string]string{"merge_id": *mergeID, "reason": *reason}, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "split %s: the two sides are now profiles %s and %s\n", res.Split.ID, res.Profiles[0], res.Profiles[1])
		return nil
	}
	fmt.Fprint(stderr, profileUsage)
	return fmt.Errorf("unknown profile command %q", args[0])
}
