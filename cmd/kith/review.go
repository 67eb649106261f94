package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith"
)

const reviewUsage = `Usage:
  kith review list [--status pending|accepted|rejected|all]   candidate pairs from probabilistic matching
  kith review show ID                                          one pair with its match weight breakdown
  kith review accept ID [--reason TEXT]                        link the pair (an explainable, reversible merge)
  kith review reject ID [--reason TEXT]                        keep it apart
`

func runReview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, reviewUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("kith review "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	status := fs.String("status", "pending", "which items to list")
	reason := fs.String("reason", "", "why (recorded)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		var resp struct {
			Data []kith.ReviewItem `json:"data"`
		}
		if err := c.do(ctx, "GET", "/v1/review?status="+*status, nil, &resp); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tA\tB\tPROBABILITY\tWEIGHT\tSTATUS")
		for _, it := range resp.Data {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.4f\t%.2f\t%s\n", it.ID, it.A, it.B, it.Probability, it.Weight, it.Status)
		}
		return tw.Flush()
	case "show", "accept", "reject":
		if len(pos) != 1 {
			return errors.New("give one review item id")
		}
		if args[0] == "show" {
			var it kith.ReviewItem
			if err := c.do(ctx, "GET", "/v1/review/"+pos[0], nil, &it); err != nil {
				return err
			}
			return printJSON(stdout, it)
		}
		var out struct {
			Item  kith.ReviewItem `json:"item"`
			Merge *kith.Merge     `json:"merge"`
		}
		if err := c.do(ctx, "POST", "/v1/review/"+pos[0], map[string]string{"decision": args[0], "reason": *reason}, &out); err != nil {
			return err
		}
		msg := fmt.Sprintf("%s: %s", out.Item.ID, out.Item.Status)
		if out.Merge != nil {
			msg += fmt.Sprintf(", merged into %s (merge %s)", out.Merge.Survivor, out.Merge.ID)
		}
		fmt.Fprintln(stdout, strings.TrimSpace(msg))
		return nil
	}
	fmt.Fprint(stderr, reviewUsage)
	return fmt.Errorf("unknown review command %q", args[0])
}

func runMatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith match", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	c.http.Timeout = 60 * time.Minute
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	var run kith.InsightRun
	if err := c.do(ctx, "POST", "/v1/match/runs", nil, &run); err != nil {
		return err
	}
	if err := printJSON(stdout, run); err != nil {
		return err
	}
	if run.Status == kith.RunFailed {
		return fmt.Errorf("matching run %s failed: %s", run.ID, run.Error)
	}
	return nil
}
