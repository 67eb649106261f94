package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/privacy"
)

// Destinations is what the console reads from, and asks of, the delivery
// engine (activation.Engine): how each destination's worker is doing,
// pausing and resuming one, and sending its dead letters again.
type Destinations interface {
	// State returns how a destination's worker is doing; ok is false
	// when no worker runs for it (paused, or not loaded yet).
	State(id string) (s activation.State, ok bool)
	// SetPaused pauses or resumes a destination by name.
	SetPaused(ctx context.Context, name string, paused bool) (kith.Destination, error)
	// Replay sends a destination's dead letters again (all of them when
	// ids is empty) and returns how many.
	Replay(ctx context.Context, id string, ids []string) (int, error)
}

// deliveriesPage is how many retrying or dead-lettered deliveries the
// destination page lists at a time.
const deliveriesPage = 50

// destinationRow is one destination as the console shows it: its
// settings (config secrets redacted), what it subscribes to, its
// accounting, and how its worker is doing.
type destinationRow struct {
	kith.Destination
	activation.Account
	Progress kith.DestinationProgress
	// Target is where it sends (the webhook's url, the segment
	// endpoint), from the redacted config.
	Target string
	// Settings are the redacted config's fields, by name.
	Settings []setting
	// Subscribes says in words what it receives.
	Events    string
	Audiences []string
	As        string
	// State is the worker's, when one runs (Running).
	State   activation.State
	Running bool
	// Health is one word (healthy, failing, refusing, paused, starting)
	// with Problem saying why and Since since when; Bad marks the words
	// that ask for a look.
	Health  string
	Bad     bool
	Problem string
	Since   time.Time
	Behind  string
	// Filters lists FilteredBy as "reason n", by reason.
	Filters []string
	// MappingText is the mapping as JSON ("" for none); Syncing names
	// the audience whose current members are being sent first.
	MappingText string
	Syncing     string
}

// setting is one field of a destination's redacted config.
type setting struct{ Name, Value string }

// destinationsEnabled reports whether this console has the delivery
// engine: without it there is no destinations page.
func (c *Console) destinationsEnabled() bool { return c.cfg.Destinations != nil }

// destinationRows reads ds's accounting against one reading of the
// stream heads (activation.Summarize, as the API counts), leaving out a
// destination deleted meanwhile.
func (c *Console) destinationRows(ctx context.Context, ds []kith.Destination) ([]destinationRow, error) {
	counts, err := c.cfg.Store.DestinationCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("counting deliveries: %w", err)
	}
	h, err := activation.ReadHeads(ctx, c.cfg.Store, activation.AnyAudiences(ds...))
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	rows := make([]destinationRow, 0, len(ds))
	for _, d := range ds {
		a, p, err := activation.Summarize(ctx, c.cfg.Store, d, counts[d.ID], h, now)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue
		} else if err != nil {
			return nil, err
		}
		row := destinationRow{Destination: d, Account: a, Progress: p}
		row.Config = activation.Redact(d.Type, d.Config)
		row.Target, row.Settings = settings(row.Config)
		row.Events = eventsText(d.Events)
		row.Audiences = d.Audiences
		row.As = cmp.Or(d.AudienceAs, kith.AudienceAsTrack)
		if d.Mapping != nil {
			b, _ := json.Marshal(d.Mapping)
			row.MappingText = string(b)
		}
		if p.Sync > 0 && p.Sync <= len(d.Audiences) {
			row.Syncing = d.Audiences[p.Sync-1]
		}
		row.State, row.Running = c.cfg.Destinations.State(d.ID)
		row.Health, row.Bad, row.Problem, row.Since = health(d, row.State, row.Running)
		if a.BehindSeconds > 0 {
			row.Behind = ago(time.Duration(a.BehindSeconds * float64(time.Second)))
		}
		for reason, n := range a.FilteredBy {
			row.Filters = append(row.Filters, reason+" "+strconv.FormatInt(n, 10))
		}
		sort.Strings(row.Filters)
		rows = append(rows, row)
	}
	return rows, nil
}

// settings returns a redacted config's target URL and its fields in name
// order, each value as text (JSON for anything but a string).
func settings(redacted json.RawMessage) (string, []setting) {
	var m map[string]json.RawMessage
	if json.Unmarshal(redacted, &m) != nil {
		return "", nil
	}
	var out []setting
	target := ""
	for name, v := range m {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		if name == "url" || name == "endpoint" {
			target = s
		}
		out = append(out, setting{name, s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return target, out
}

// eventsText says which events a filter selects.
func eventsText(f *kith.EventFilter) string {
	if f == nil {
		return "none"
	}
	var parts []string
	for _, p := range activation.FilterParts(*f) {
		parts = append(parts, p[0]+": "+p[1])
	}
	if len(parts) == 0 {
		return "all events"
	}
	return strings.Join(parts, "; ")
}

// health sums up how a destination is doing: paused; starting (no worker
// runs for it yet); failing (its latest requests failed, or its worker
// cannot work: its config, the store), with the latest error; refusing
// (its latest request was dead-lettered: the receiver refuses what it is
// sent); healthy otherwise.
func health(d kith.Destination, st activation.State, running bool) (word string, bad bool, problem string, since time.Time) {
	last := activation.Attempt{}
	if n := len(st.Attempts); n > 0 {
		last = st.Attempts[n-1]
	}
	switch {
	case d.Paused:
		return "paused", false, "New events wait in the log until it is resumed.", time.Time{}
	case !running:
		return "starting", false, "", time.Time{}
	case st.Health.Failing > 0:
		problem = st.Health.LastError
		if last.Error != "" && last.Outcome != activation.Delivered.String() {
			problem = last.Error
		}
		if st.Waiting {
			problem += " — new messages wait in the log until a retry goes through."
		}
		return "failing", true, problem, st.Health.Since
	case last.Outcome == activation.Dead.String():
		return "refusing", true, "Its latest request was dead-lettered: " + last.Error, last.At
	}
	return "healthy", false, "", time.Time{}
}

// breakable returns s escaped, with a line break allowed after each "/"
// (an URL), so that a narrow column breaks it between its parts.
func breakable(s string) template.HTML {
	return template.HTML(strings.ReplaceAll(template.HTMLEscapeString(s), "/", "/<wbr>"))
}

// ago says how long a duration is, roughly, as people say it.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days"
}

// destinations serves GET /destinations: every destination with what it
// subscribes to, its health and its accounting.
func (c *Console) destinations(w http.ResponseWriter, r *http.Request, s *session) {
	ds, err := c.cfg.Store.Destinations(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	rows, err := c.destinationRows(r.Context(), ds)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, "destinations", map[string]any{"Title": "Destinations", "Destinations": rows})
}

// attemptRow is one of a destination's latest requests.
type attemptRow struct {
	activation.Attempt
	Latency string
	Bad     bool
}

// deliveryRow is one retrying or dead-lettered delivery: its message as
// the token may see it (privacy.MaskEvent without pii:read).
type deliveryRow struct {
	kith.Delivery
	Summary string
	Body    string
}

// destination serves GET /destinations/{name}: its settings, accounting,
// latest requests and, for a token that may read messages about people
// (profiles:read, as the API's deliveries), the first page of its
// retrying and dead-lettered deliveries.
func (c *Console) destination(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	d, err := c.cfg.Store.Destination(ctx, r.PathValue("name"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	rows, err := c.destinationRows(ctx, []kith.Destination{d})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if len(rows) == 0 {
		c.fail(w, r, s, kith.Errorf(kith.ENOTFOUND, "no destination %q", d.Name))
		return
	}
	row := rows[0]
	var attempts []attemptRow
	for _, a := range slices.Backward(row.State.Attempts) { // newest first
		attempts = append(attempts, attemptRow{Attempt: a, Latency: latency(a.Latency), Bad: a.Outcome != activation.Delivered.String()})
	}
	data := map[string]any{"Title": d.Name, "D": row, "Attempts": attempts}
	// The answer of a replay, shown once on the page it redirects to.
	switch n, err := strconv.Atoi(r.URL.Query().Get("replayed")); {
	case err != nil || n < 0:
	case n == 0:
		data["Replayed"] = "There were no dead letters to send again."
	case n == 1:
		data["Replayed"] = "1 dead letter sent again: it waits among the retries, due now."
	default:
		data["Replayed"] = strconv.Itoa(n) + " dead letters sent again: they wait among the retries, due now."
	}
	if s.tok.HasScope(kith.ScopeProfilesRead) {
		pii := s.tok.HasScope(kith.ScopePIIRead)
		q := r.URL.Query()
		for _, list := range []struct {
			dead       bool
			param, key string
		}{{false, "retrying_after", "Retrying"}, {true, "dead_after", "Dead"}} {
			page, next, err := c.deliveries(ctx, d.ID, list.dead, q.Get(list.param), pii)
			if err != nil {
				c.fail(w, r, s, err)
				return
			}
			data[list.key] = page
			if next != "" {
				more := url.Values{list.param: {next}}
				data[list.key+"Next"] = "?" + more.Encode()
			}
		}
	}
	c.render(w, r, s, "destination", data)
}

// deliveries reads one page of a destination's retrying or dead-lettered
// deliveries after the id after, and the id the next page starts after
// ("" when this is the last).
func (c *Console) deliveries(ctx context.Context, id string, dead bool, after string, pii bool) ([]deliveryRow, string, error) {
	ds, err := c.cfg.Store.Deliveries(ctx, id, dead, after, deliveriesPage+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ds) > deliveriesPage {
		ds = ds[:deliveriesPage]
		next = ds[deliveriesPage-1].ID
	}
	out := make([]deliveryRow, len(ds))
	for i, dl := range ds {
		body := dl.Body
		if !pii {
			body = privacy.MaskEvent(body)
		}
		var m struct{ Type, Event, Name string }
		_ = json.Unmarshal(body, &m)
		summary := strings.TrimSpace(m.Type + " " + cmp.Or(m.Event, m.Name))
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(body)
		}
		out[i] = deliveryRow{Delivery: dl, Summary: cmp.Or(summary, dl.Kind), Body: pretty.String()}
		out[i].Delivery.Body = nil
	}
	return out, next, nil
}

// latency shows a request's duration in milliseconds.
func latency(d time.Duration) string {
	ms := float64(d.Microseconds()) / 1000
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

// setPaused serves POST /destinations/{name}/pause (paused true) and
// /resume, through the engine.
func (c *Console) setPaused(paused bool) func(w http.ResponseWriter, r *http.Request, s *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		d, err := c.cfg.Destinations.SetPaused(r.Context(), r.PathValue("name"), paused)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		http.Redirect(w, r, "/destinations/"+url.PathEscape(d.Name), http.StatusSeeOther)
	}
}

// replay serves POST /destinations/{name}/replay: every dead letter goes
// back among the retrying deliveries, due now, through the engine.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.cfg.Store.Destination(r.Context(), r.PathValue("name"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	n, err := c.cfg.Destinations.Replay(r.Context(), d.ID, nil)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/destinations/"+url.PathEscape(d.Name)+"?replayed="+strconv.Itoa(n), http.StatusSeeOther)
}
