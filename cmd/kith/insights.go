package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/insights"
)

const insightsUsage = `Usage:
  kith insights run [--wait] [--analysis-date YYYY-MM-DD] [--model bgnbd|paretonbd]
  kith insights runs                      list recent runs
  kith insights show RUN_ID               a run's full report (JSON)
  kith insights validate --holdout-days N [--out DIR]
      validate on the server's data: fit on all but the last N days,
      compare with those days; --out writes report.json and the SVG charts
  kith insights validate --input FILE --calibration-end D [--holdout-end D] FILE-FLAGS [--out DIR]
      the same on a file
  kith insights fit --model bgnbd|paretonbd|gammagamma --input FILE FILE-FLAGS
      --calibration-end YYYY-MM-DD --unit week|day
  kith insights rfm --input FILE FILE-FLAGS --amount-col A --analysis-date YYYY-MM-DD [--bins 5]

FILE-FLAGS: --customer-col C --date-col D [--amount-col A] [--date-format F] [--no-header]
  CSV with a header naming the columns, or with --no-header whitespace-
  separated text with columns numbered from 1. Same-day purchases are merged
  for the models, as in the literature.
`

func runInsights(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, insightsUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "fit":
		return insightsFit(args[1:], stdout, stderr)
	case "rfm":
		return insightsRFM(args[1:], stdout, stderr)
	case "validate":
		return insightsValidate(ctx, args[1:], stdout, stderr)
	case "run":
		return insightsRun(ctx, args[1:], stdout, stderr)
	case "runs":
		return insightsRuns(ctx, args[1:], stdout, stderr)
	case "show":
		return insightsShow(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, insightsUsage)
		return nil
	}
	fmt.Fprint(stderr, insightsUsage)
	return fmt.Errorf("unknown insights command %q", args[0])
}

// fileFlags are the flags that describe an orders file.
type fileFlags struct {
	input  string
	format insights.FileFormat
}

func addFileFlags(fs *flag.FlagSet) *fileFlags {
	f := &fileFlags{}
	fs.StringVar(&f.input, "input", "", "orders file (CSV with header, or whitespace text with --no-header; gzip ok)")
	fs.StringVar(&f.format.CustomerCol, "customer-col", "", "customer column (name, or number from 1 with --no-header)")
	fs.StringVar(&f.format.DateCol, "date-col", "", "order date column")
	fs.StringVar(&f.format.AmountCol, "amount-col", "", "order amount column")
	fs.StringVar(&f.format.DateFormat, "date-format", "", "date format: Go layout (2006-01-02) or strftime (%Y%m%d); default: common formats")
	fs.BoolVar(&f.format.NoHeader, "no-header", false, "the file has no header; columns are numbers from 1, separated by whitespace")
	return f
}

func (f *fileFlags) read() ([]insights.Row, error) {
	if f.input == "" {
		return nil, errors.New("--input is required")
	}
	file, err := os.Open(f.input)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	rows, err := insights.ReadOrders(file, f.format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.input, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no orders", f.input)
	}
	return rows, nil
}

func parseDay(flagName, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("--%s is required (YYYY-MM-DD)", flagName)
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q is not a date (YYYY-MM-DD)", flagName, v)
	}
	return d, nil
}

func unitDays(u string) (float64, error) {
	switch u {
	case "week", "weeks":
		return 7, nil
	case "day", "days":
		return 1, nil
	}
	return 0, fmt.Errorf("--unit must be week or day, got %q", u)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func insightsFit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights fit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs)
	model := fs.String("model", insights.ModelBGNBD, "bgnbd, paretonbd or gammagamma")
	calEnd := fs.String("calibration-end", "", "last day of the calibration period (YYYY-MM-DD, inclusive)")
	unit := fs.String("unit", "week", "time unit: week or day")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	end, err := parseDay("calibration-end", *calEnd)
	if err != nil {
		return err
	}
	days, err := unitDays(*unit)
	if err != nil {
		return err
	}
	if *model == insights.ModelGammaGamma && ff.format.AmountCol == "" {
		return errors.New("gammagamma needs --amount-col")
	}
	rows, err := ff.read()
	if err != nil {
		return err
	}
	res, err := insights.FitRows(rows, *model, end, days)
	if err != nil {
		return err
	}
	return printJSON(stdout, res.Object())
}

func insightsRFM(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights rfm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs)
	analysis := fs.String("analysis-date", "", "date recency is measured to (YYYY-MM-DD)")
	bins := fs.Int("bins", 5, "score bins")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	day, err := parseDay("analysis-date", *analysis)
	if err != nil {
		return err
	}
	if ff.format.AmountCol == "" {
		return errors.New("--amount-col is required")
	}
	rows, err := ff.read()
	if err != nil {
		return err
	}
	segs, _, err := insights.RFMRows(rows, day, *bins, nil)
	if err != nil {
		return err
	}
	return printJSON(stdout, segs)
}

func insightsValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ff := addFileFlags(fs)
	c := clientFlags(fs)
	c.http.Timeout = 30 * time.Minute
	holdout := fs.Int("holdout-days", 0, "server data: the last N days are the holdout")
	calEnd := fs.String("calibration-end", "", "file: last day of the calibration period")
	holdEnd := fs.String("holdout-end", "", "file: last day of the holdout (default: the last order)")
	unit := fs.String("unit", "week", "file: time unit: week or day")
	model := fs.String("model", insights.ModelBGNBD, "bgnbd or paretonbd")
	out := fs.String("out", "", "directory to write report.json and the SVG charts to")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	var rep *insights.Report
	if ff.input != "" {
		end, err := parseDay("calibration-end", *calEnd)
		if err != nil {
			return err
		}
		days, err := unitDays(*unit)
		if err != nil {
			return err
		}
		rows, err := ff.read()
		if err != nil {
			return err
		}
		hEnd := time.Time{}
		if *holdEnd != "" {
			if hEnd, err = parseDay("holdout-end", *holdEnd); err != nil {
				return err
			}
		} else {
			for _, r := range rows {
				if r.At.After(hEnd) {
					hEnd = r.At
				}
			}
		}
		cfg := insights.DefaultConfig()
		cfg.Model, cfg.UnitDays = *model, days
		if rep, err = insights.Validate(ctx, insights.FileSource(rows), cfg, end, hEnd); err != nil {
			return err
		}
	} else {
		if *holdout <= 0 {
			return errors.New("give --holdout-days N (server data) or --input FILE (a file)")
		}
		var run kith.InsightRun
		if err := c.do(ctx, "POST", "/v1/insights/validations", map[string]any{"holdoutDays": *holdout, "model": *model}, &run); err != nil {
			return err
		}
		if run.Status == kith.RunFailed {
			return fmt.Errorf("validation run %s failed: %s", run.ID, run.Error)
		}
		rep = &insights.Report{}
		if err := json.Unmarshal(run.Report, rep); err != nil {
			return fmt.Errorf("validation run %s: %w", run.ID, err)
		}
	}
	if *out != "" {
		if err := writeReport(*out, rep); err != nil {
			return err
		}
	}
	v := rep.Validation
	if v == nil {
		return errors.New("the report has no validation")
	}
	summary := map[string]any{
		"model": rep.Config.Model, "params": rep.Models[rep.Config.Model].Params,
		"calibrationEnd": v.CalibrationEnd, "holdoutEnd": v.HoldoutEnd, "customers": v.Customers,
		"actualHoldout": v.ActualHoldout, "forecastHoldout": v.ForecastHoldout, "errorPercent": v.ErrorPercent,
		"correlation": v.Correlation, "mae": v.MAE, "byFrequency": v.ByFrequency,
	}
	if n := len(v.Tracking); n > 0 {
		summary["cumulativeActual"], summary["cumulativeForecast"] = v.Tracking[n-1].Actual, v.Tracking[n-1].Forecast
	}
	return printJSON(stdout, summary)
}

// writeReport writes report.json (without the charts) and each chart.
func writeReport(dir string, rep *insights.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if v := rep.Validation; v != nil {
		for name, svg := range v.Charts {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), []byte(svg), 0o644); err != nil {
				return err
			}
		}
		charts := v.Charts
		v.Charts = nil
		defer func() { v.Charts = charts }()
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644)
}

func insightsRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	c.http.Timeout = 30 * time.Minute
	wait := fs.Bool("wait", false, "wait until the run has finished and print its report")
	analysis := fs.String("analysis-date", "", "last day of data to use (default: today)")
	model := fs.String("model", "", "purchase model: bgnbd or paretonbd (default: the server's)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	body := map[string]any{"wait": *wait}
	if *analysis != "" {
		body["analysisDate"] = *analysis
	}
	if *model != "" {
		body["model"] = *model
	}
	var run kith.InsightRun
	if err := c.do(ctx, "POST", "/v1/insights/runs", body, &run); err != nil {
		return err
	}
	if err := printJSON(stdout, run); err != nil {
		return err
	}
	if run.Status == kith.RunFailed {
		return fmt.Errorf("run %s failed: %s", run.ID, run.Error)
	}
	return nil
}

func insightsRuns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	var resp struct {
		Data []kith.InsightRun `json:"data"`
	}
	if err := c.do(ctx, "GET", "/v1/insights/runs", nil, &resp); err != nil {
		return err
	}
	sort.SliceStable(resp.Data, func(i, j int) bool { return resp.Data[i].StartedAt.After(resp.Data[j].StartedAt) })
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTRIGGER\tSTARTED\tSECONDS\tERROR")
	for _, r := range resp.Data {
		secs := ""
		if !r.FinishedAt.IsZero() {
			secs = fmt.Sprintf("%.1f", r.FinishedAt.Sub(r.StartedAt).Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.Trigger, r.StartedAt.Format(time.RFC3339), secs, r.Error)
	}
	return tw.Flush()
}

func insightsShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith insights show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := clientFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: kith insights show RUN_ID")
	}
	var run kith.InsightRun
	if err := c.do(ctx, "GET", "/v1/insights/runs/"+pos[0], nil, &run); err != nil {
		return err
	}
	return printJSON(stdout, run)
}
