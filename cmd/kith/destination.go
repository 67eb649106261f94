package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/httpapi"
)

const destinationUsage = `Usage:
  kith destination create --name NAME --type webhook|segment [flags]
                          a destination receives what it subscribes to from now on
  kith destination list                   names, types, state and accounting
  kith destination show NAME              settings (secrets hidden), accounting, latest requests
  kith destination test NAME              send one test message now
  kith destination pause|resume NAME
  kith destination deliveries NAME [--dead] [--limit N] [--after ID]
                                          messages waiting for a retry, or dead-lettered
  kith destination replay NAME [--id ID]...
                                          send the dead letters (or those named) again
  kith destination delete NAME
Each takes --json to print the API's answer as it is; kith destination
COMMAND --help lists a command's flags.
`

// destinationCommands are the usage line of each destination command.
var destinationCommands = map[string]string{
	"create":     "kith destination create --name NAME --type webhook|segment [--url URL] [--secret SECRET] [--events[=FILTER]] [--audience KEY]... [--trait KEY]... [--consent CATEGORY]... [--config FILE|JSON] [--mapping FILE|JSON]",
	"list":       "kith destination list",
	"show":       "kith destination show NAME",
	"test":       "kith destination test NAME",
	"pause":      "kith destination pause NAME",
	"resume":     "kith destination resume NAME",
	"deliveries": "kith destination deliveries NAME [--dead] [--limit N] [--after ID]",
	"replay":     "kith destination replay NAME [--id ID]... | --from TIME --to TIME",
	"delete":     "kith destination delete NAME",
}

// destinationConfigKeys names, per type, the config members --url and
// --secret fill in.
var destinationConfigKeys = map[string][2]string{
	kith.DestinationWebhook: {"url", "secret"},
	kith.DestinationSegment: {"endpoint", "writeKey"},
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// eventsFlag is --events (every accepted event), --events=false or
// --events='{"types":[…],"events":[…],"sources":[…]}' (a filter).
type eventsFlag struct{ raw json.RawMessage }

func (f *eventsFlag) String() string { return string(f.raw) }

// IsBoolFlag lets --events stand alone.
func (f *eventsFlag) IsBoolFlag() bool { return true }

func (f *eventsFlag) Set(v string) error {
	switch v = strings.TrimSpace(v); {
	case v == "true" || v == "false":
		f.raw = json.RawMessage(v)
	case strings.HasPrefix(v, "{") && json.Valid([]byte(v)):
		f.raw = json.RawMessage(v)
	default:
		return errors.New(`want true, false or a JSON filter such as '{"types":["track"],"events":["Order Completed"]}'`)
	}
	return nil
}

// destinationState is "paused" or "active".
func destinationState(d httpapi.DestinationView) string {
	if d.Paused {
		return "paused"
	}
	return "active"
}

// destinationEvents says in words what events d subscribes to.
func destinationEvents(d httpapi.DestinationView) string {
	f := d.Events
	if f == nil {
		return "none"
	}
	var parts []string
	for _, p := range activation.FilterParts(*f) {
		parts = append(parts, p[0]+" "+p[1])
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, "; ")
}

// destinationCall sends a request of a destination command. With --json
// it prints the answer as it is and says so (printed); otherwise it
// decodes the answer into out, for the command to print its way.
func destinationCall(ctx context.Context, c *client, method, path string, body any, asJSON bool, stdout io.Writer, out any) (printed bool, err error) {
	var raw json.RawMessage
	if err := c.do(ctx, method, path, body, &raw); err != nil {
		return false, err
	}
	if asJSON {
		_, err := fmt.Fprintln(stdout, string(raw))
		return true, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return false, nil
}

func runDestination(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, destinationUsage)
		return flag.ErrHelp
	}
	cmd := args[0]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, destinationUsage)
		return nil
	}
	line, ok := destinationCommands[cmd]
	if !ok {
		fmt.Fprint(stderr, destinationUsage)
		return fmt.Errorf("unknown destination command %q", cmd)
	}
	fs := flag.NewFlagSet("kith destination "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  %s\n\nFlags:\n", line)
		fs.PrintDefaults()
	}
	c := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	var create *createFlags
	if cmd == "create" {
		create = addCreateFlags(fs)
	}
	var dead *bool
	var limit *int
	var after *string
	var replayIDs stringList
	var replayFrom, replayTo *string
	if cmd == "replay" {
		fs.Var(&replayIDs, "id", "replay only this dead letter (repeatable; default: all)")
		replayFrom = fs.String("from", "", "instead of dead letters, send again the events that arrived from this time (RFC 3339, e.g. 2026-12-01T00:00:00Z) …")
		replayTo = fs.String("to", "", "… until this time (not included)")
	}
	if cmd == "deliveries" {
		dead = fs.Bool("dead", false, "the dead-letter list instead of the messages waiting for a retry")
		limit = fs.Int("limit", 100, "how many to list (at most 1000)")
		after = fs.String("after", "", "continue after this delivery id (the next page)")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if cmd == "create" {
		return create.run(ctx, c, pos, *asJSON, stdout)
	}
	if cmd == "list" {
		if len(pos) != 0 {
			return fmt.Errorf("usage: %s", line)
		}
		return destinationList(ctx, c, *asJSON, stdout)
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: %s", line)
	}
	name := pos[0]
	path := "/v1/destinations/" + url.PathEscape(name)
	switch cmd {
	case "show":
		return destinationShow(ctx, c, path, *asJSON, stdout)
	case "pause", "resume":
		var d httpapi.DestinationView
		if printed, err := destinationCall(ctx, c, "POST", path+"/"+cmd, nil, *asJSON, stdout, &d); printed || err != nil {
			return err
		}
		fmt.Fprintf(stdout, "destination %s %sd\n", name, cmd)
		return nil
	case "delete":
		if err := c.do(ctx, "DELETE", path, nil, nil); err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "destination %s deleted\n", name)
		}
		return nil
	case "replay":
		var body any
		if len(replayIDs) > 0 {
			body = map[string][]string{"ids": replayIDs}
		}
		if *replayFrom != "" || *replayTo != "" {
			if len(replayIDs) > 0 {
				return fmt.Errorf("give --id (dead letters) or --from and --to (the log), not both")
			}
			return replayLog(ctx, c, name, path, *replayFrom, *replayTo, *asJSON, stdout)
		}
		var res struct{ Replayed int }
		if printed, err := destinationCall(ctx, c, "POST", path+"/replay", body, *asJSON, stdout, &res); printed || err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d dead letters of %s sent again (back among the retrying deliveries)\n", res.Replayed, name)
		return nil
	case "test":
		return destinationTest(ctx, c, path, name, *asJSON, stdout)
	case "deliveries":
		q := url.Values{"dead": {fmt.Sprint(*dead)}, "limit": {fmt.Sprint(*limit)}}
		if *after != "" {
			q.Set("after", *after)
		}
		return destinationDeliveries(ctx, c, path+"/deliveries?"+q.Encode(), *asJSON, stdout)
	}
	return fmt.Errorf("unknown destination command %q", cmd)
}

// createFlags are the flags of kith destination create.
type createFlags struct {
	name, typ, url, secret, config, audienceAs, mapping *string
	rateLimit                                           *float64
	events                                              eventsFlag
	audiences, consent, traits                          stringList
}

func addCreateFlags(fs *flag.FlagSet) *createFlags {
	f := &createFlags{
		name:       fs.String("name", "", "the destination's name (unique)"),
		typ:        fs.String("type", "", "webhook or segment"),
		url:        fs.String("url", "", "webhook: the URL each message is POSTed to; segment: the receiver's base URL (endpoint)"),
		secret:     fs.String("secret", "", "webhook: the signing secret, whsec_… (generated and shown once when absent); segment: the receiver's write key"),
		config:     fs.String("config", "", "the type's config as a JSON object, or a file holding one; --url and --secret override its members"),
		audienceAs: fs.String("audience-as", "", "how audience changes are sent: track (Audience Entered/Exited, the default) or identify"),
		rateLimit:  fs.Float64("rate-limit", 0, "deliveries per second at most (0: no cap)"),
		mapping:    fs.String("mapping", "", `reshape what is sent: a JSON object, or a file holding one, with drop (paths), rename (from → to), set (path → JSON value), traits (path → trait key), e.g. '{"rename":{"userId":"customer_id"}}'`),
	}
	fs.Var(&f.events, "events", `send every accepted event (--events), or those a filter selects (--events='{"types":["track"],"events":["Order Completed"],"sources":["src_…"]}')`)
	fs.Var(&f.audiences, "audience", "send this audience's entries and exits (repeatable)")
	fs.Var(&f.consent, "consent", "send only the data of people who granted this consent category (repeatable)")
	fs.Var(&f.traits, "trait", "send this trait's changes (computed, predicted or from events) as identify calls (repeatable)")
	return f
}

// body is the request the flags describe.
func (f *createFlags) body(pos []string) (map[string]any, error) {
	name := *f.name
	if name == "" && len(pos) == 1 {
		name = pos[0]
	} else if len(pos) > 0 {
		return nil, fmt.Errorf("usage: %s", destinationCommands["create"])
	}
	if name == "" || *f.typ == "" {
		return nil, fmt.Errorf("give --name and --type (usage: %s)", destinationCommands["create"])
	}
	config, err := jsonObjectFlag("config", *f.config)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = map[string]json.RawMessage{}
	}
	mapping, err := jsonObjectFlag("mapping", *f.mapping)
	if err != nil {
		return nil, err
	}
	keys, known := destinationConfigKeys[*f.typ]
	if !known {
		keys = [2]string{"url", "secret"}
	}
	for i, v := range []string{*f.url, *f.secret} {
		if v != "" {
			config[keys[i]], _ = json.Marshal(v)
		}
	}
	body := map[string]any{"name": name, "type": *f.typ, "config": config}
	if f.events.raw != nil {
		body["events"] = f.events.raw
	}
	if len(f.audiences) > 0 {
		body["audiences"] = []string(f.audiences)
	}
	if *f.audienceAs != "" {
		body["audienceAs"] = *f.audienceAs
	}
	if len(f.traits) > 0 {
		body["traits"] = []string(f.traits)
	}
	if len(f.consent) > 0 {
		body["consent"] = []string(f.consent)
	}
	if mapping != nil {
		body["mapping"] = mapping
	}
	if *f.rateLimit != 0 {
		body["rateLimit"] = *f.rateLimit
	}
	return body, nil
}

// jsonObjectFlag reads a flag holding a JSON object, or the name of a
// file holding one; nil when the flag is empty.
func jsonObjectFlag(name, v string) (map[string]json.RawMessage, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	data := []byte(v)
	if !strings.HasPrefix(v, "{") {
		var err error
		if data, err = os.ReadFile(v); err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, fmt.Errorf("--%s: not a JSON object: %v", name, err)
	}
	return m, nil
}

func (f *createFlags) run(ctx context.Context, c *client, pos []string, asJSON bool, stdout io.Writer) error {
	body, err := f.body(pos)
	if err != nil {
		return err
	}
	var d httpapi.DestinationView
	if printed, err := destinationCall(ctx, c, "POST", "/v1/destinations", body, asJSON, stdout, &d); printed || err != nil {
		return err
	}
	fmt.Fprintf(stdout, "destination %s (%s) created: %s, events %s", d.Name, d.ID, d.Type, destinationEvents(d))
	if len(d.Audiences) > 0 {
		fmt.Fprintf(stdout, ", audiences %s", strings.Join(d.Audiences, ", "))
	}
	if len(d.Traits) > 0 {
		fmt.Fprintf(stdout, ", traits %s", strings.Join(d.Traits, ", "))
	}
	if len(d.Consent) > 0 {
		fmt.Fprintf(stdout, ", consent %s", strings.Join(d.Consent, ", "))
	}
	if len(d.Audiences) > 0 {
		fmt.Fprintln(stdout, "\nIt receives the current members of its audiences first, then what happens from now on.")
	} else {
		fmt.Fprintln(stdout, "\nIt receives what happens from now on.")
	}
	if d.Secret != "" {
		fmt.Fprintf(stdout, "signing secret: %s\nThe signing secret is shown only now; store it safely.\n", d.Secret)
	}
	return nil
}

func destinationList(ctx context.Context, c *client, asJSON bool, stdout io.Writer) error {
	var list struct{ Data []httpapi.DestinationView }
	if printed, err := destinationCall(ctx, c, "GET", "/v1/destinations", nil, asJSON, stdout, &list); printed || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tDELIVERED\tPENDING\tRETRYING\tDEAD\tFILTERED")
	for _, d := range list.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", d.Name, d.Type, destinationState(d), d.Delivered, d.Pending, d.Retrying, d.DeadLettered, d.Filtered)
	}
	return tw.Flush()
}

func destinationShow(ctx context.Context, c *client, path string, asJSON bool, stdout io.Writer) error {
	var d httpapi.DestinationView
	if printed, err := destinationCall(ctx, c, "GET", path, nil, asJSON, stdout, &d); printed || err != nil {
		return err
	}
	orNone := func(l []string) string {
		if len(l) == 0 {
			return "none"
		}
		return strings.Join(l, ", ")
	}
	audiences := orNone(d.Audiences)
	if len(d.Audiences) > 0 {
		as := d.AudienceAs
		if as == "" {
			as = kith.AudienceAsTrack
		}
		audiences += " (as " + as + ")"
	}
	rate := "no cap"
	if d.RateLimit > 0 {
		rate = fmt.Sprintf("%g/s", d.RateLimit)
	}
	pending := fmt.Sprint(d.Pending)
	if d.BehindSeconds > 0 {
		pending += fmt.Sprintf(" (the oldest arrived %s ago)", time.Duration(d.BehindSeconds*float64(time.Second)).Round(time.Millisecond))
	}
	filtered := fmt.Sprint(d.Filtered)
	if len(d.FilteredBy) > 0 {
		var parts []string
		for reason, n := range d.FilteredBy {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(parts)
		filtered += " (" + strings.Join(parts, ", ") + ")"
	}
	mapping := "none"
	if d.Mapping != nil {
		b, _ := json.Marshal(d.Mapping)
		mapping = string(b)
	}
	progress := fmt.Sprintf("log %d, audience changes %d", d.Progress.LogSeq, d.Progress.ChangeSeq)
	if len(d.Traits) > 0 {
		progress += fmt.Sprintf(", trait changes %d", d.Progress.TraitSeq)
	}
	if p := d.Progress; p.Replaying() {
		progress += fmt.Sprintf("; replaying the log, at %d of %d", p.ReplayAt, p.ReplayTo)
	}
	if p := d.Progress; p.Sync > 0 && p.Sync <= len(d.Audiences) {
		progress += fmt.Sprintf("; sending the members of %s first", d.Audiences[p.Sync-1])
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"name", d.Name}, {"id", d.ID}, {"type", d.Type}, {"state", destinationState(d)}, {"created", d.CreatedAt.Format(time.RFC3339)},
		{"config", string(d.Config)}, {"events", destinationEvents(d)}, {"audiences", audiences}, {"traits", orNone(d.Traits)}, {"consent", orNone(d.Consent)},
		{"mapping", mapping}, {"rate limit", rate},
		{"delivered", fmt.Sprint(d.Delivered)}, {"pending", pending}, {"retrying", fmt.Sprint(d.Retrying)},
		{"dead-lettered", fmt.Sprint(d.DeadLettered)}, {"filtered", filtered},
		{"progress", progress},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	if w := d.Worker; w != nil {
		worker := "stopped"
		switch {
		case w.Running && w.Waiting:
			worker = "running, new messages wait until a retry goes through"
		case w.Running:
			worker = "running"
		}
		fmt.Fprintf(tw, "worker\t%s\n", worker)
		if w.LastError != "" {
			fmt.Fprintf(tw, "last error\t%s\n", oneLine(w.LastError))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if d.Worker == nil || len(d.Worker.Attempts) == 0 {
		return nil
	}
	fmt.Fprintln(stdout, "\nlatest requests:")
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tMESSAGES\tSTATUS\tLATENCY\tOUTCOME\tERROR")
	for _, a := range d.Worker.Attempts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f ms\t%s\t%s\n", a.At.Format(time.RFC3339), a.Messages, a.Status, a.LatencyMs, a.Outcome, oneLine(a.Error))
	}
	return tw.Flush()
}

func destinationTest(ctx context.Context, c *client, path, name string, asJSON bool, stdout io.Writer) error {
	var raw json.RawMessage
	if err := c.do(ctx, "POST", path+"/test", nil, &raw); err != nil {
		return err
	}
	var res struct {
		OK        bool
		MessageID string
		Status    int
		LatencyMs float64
		Outcome   string
		Error     string
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if asJSON {
		fmt.Fprintln(stdout, string(raw))
	} else if res.OK {
		fmt.Fprintf(stdout, "test message %s to %s: delivered (HTTP %d, %.1f ms)\n", res.MessageID, name, res.Status, res.LatencyMs)
	}
	if !res.OK {
		return fmt.Errorf("test message %s to %s: %s (would be %s)", res.MessageID, name, res.Error, res.Outcome)
	}
	return nil
}

func destinationDeliveries(ctx context.Context, c *client, path string, asJSON bool, stdout io.Writer) error {
	var page struct {
		Data   []kith.Delivery
		Cursor struct {
			HasMore bool   `json:"has_more"`
			Next    string `json:"next"`
		}
	}
	if printed, err := destinationCall(ctx, c, "GET", path, nil, asJSON, stdout, &page); printed || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tPROFILE\tATTEMPTS\tFIRST\tNEXT\tSTATUS\tERROR")
	for _, d := range page.Data {
		next := "-"
		if !d.Dead {
			next = d.NextAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", d.ID, d.Kind, d.Key, d.Attempts, d.FirstAt.Format(time.RFC3339), next, d.LastStatus, oneLine(d.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Cursor.HasMore {
		fmt.Fprintf(stdout, "more: --after %s\n", page.Cursor.Next)
	}
	return nil
}

// oneLine keeps text a remote server answered (an error) on one line of
// a table: tabs and line breaks become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// replayLog asks the server to send a time range of the log again.
func replayLog(ctx context.Context, c *client, name, path, from, to string, asJSON bool, stdout io.Writer) error {
	var times [2]time.Time
	for i, v := range []struct{ flag, value string }{{"from", from}, {"to", to}} {
		if v.value == "" {
			return fmt.Errorf("--%s: give both --from and --to", v.flag)
		}
		t, err := time.Parse(time.RFC3339, v.value)
		if err != nil {
			return fmt.Errorf("--%s: not an RFC 3339 time (like 2026-12-01T00:00:00Z): %q", v.flag, v.value)
		}
		times[i] = t
	}
	var res struct {
		Replaying struct {
			After, Through int64
		}
	}
	body := map[string]time.Time{"from": times[0], "to": times[1]}
	if printed, err := destinationCall(ctx, c, "POST", path+"/replay", body, asJSON, stdout, &res); printed || err != nil {
		return err
	}
	sp := res.Replaying
	if sp.Through <= sp.After {
		fmt.Fprintf(stdout, "no event arrived from %s until %s: nothing to replay to %s\n", from, to, name)
		return nil
	}
	fmt.Fprintf(stdout, "replaying to %s the events at log positions %d to %d (those it selects), with new delivery ids\n", name, sp.After+1, sp.Through)
	return nil
}
