package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith"
)

// runAudit is `kith audit`: the audit log of admin actions, oldest first.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	by := fs.String("by", "", "only the actions of this token (its id)")
	action := fs.String("action", "", "only actions whose route contains this")
	target := fs.String("target", "", "only actions on this target (ref=email:ada@example.com, key=loyal_customers, ...)")
	after := fs.Int64("after", 0, "entries after this seq")
	limit := fs.Int("limit", 100, "entries to show (at most 1000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}, "after": {strconv.FormatInt(*after, 10)}}
	for k, v := range map[string]string{"token": *by, "action": *action, "target": *target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out struct {
		Data []kith.AuditEntry `json:"data"`
	}
	if err := c.do(ctx, "GET", "/v1/audit?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tTOKEN\tACTION\tTARGET\tOUTCOME")
	for _, e := range out.Data {
		fmt.Fprintf(tw, "%d\t%s\t%s (%s)\t%s\t%s\t%s %d\n", e.Seq, e.At.Format(time.RFC3339), e.TokenName, e.TokenID, e.Action, e.Target, e.Outcome, e.Status)
	}
	return tw.Flush()
}
