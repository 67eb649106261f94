package console

import (
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
	"unicode"
	"unicode/utf8"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/chart"
	"github.com/kithcdp/kith/httperr"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/privacy"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"raw": func(v json.RawMessage) string { return string(v) },
	// val shows a trait value as a person reads it: text without quotes,
	// a list as chips, anything else as JSON.
	"val": func(v json.RawMessage) template.HTML {
		var x any
		if json.Unmarshal(v, &x) != nil {
			return template.HTML(template.HTMLEscapeString(string(v)))
		}
		switch t := x.(type) {
		case string:
			return template.HTML(template.HTMLEscapeString(t))
		case []any:
			var b strings.Builder
			for _, e := range t {
				s, ok := e.(string)
				if !ok {
					j, _ := json.Marshal(e)
					s = string(j)
				}
				b.WriteString(`<span class="chip">` + template.HTMLEscapeString(s) + `</span>`)
			}
			return template.HTML(b.String())
		}
		return template.HTML("<code>" + template.HTMLEscapeString(string(v)) + "</code>")
	},
	// whenSec is when to the second, for requests and retries.
	"whenSec": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	// dict passes several values to a template: pairs of a name and a
	// value.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict: %d arguments, not pairs", len(kv))
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: argument %d is not a name", i)
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	"breakable":   breakable,
	"pathEscape":  url.PathEscape,
	"queryEscape": url.QueryEscape,
	"pct":         func(v float64) string { return strconv.FormatFloat(100*v, 'f', 0, 64) + "%" },
}

// overview serves GET /: profiles, and each source's health from the
// accounting counters.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	counts, err := c.cfg.Store.Counts(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	srcs, err := c.cfg.Store.Sources(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	profiles, err := c.cfg.Store.ProfileCount(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	type row struct {
		Name     string
		Disabled bool
		kith.Counts
		Rejected int64
		Reasons  string
		Healthy  bool
	}
	var rows []row
	var total kith.Counts
	for _, src := range srcs {
		k := counts[src.ID]
		var reasons []string
		for reason, n := range k.Rejected {
			reasons = append(reasons, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(reasons)
		rej := k.RejectedTotal()
		// A source is unhealthy when it is disabled, when more than one
		// event in twenty is rejected, or when processing lags behind.
		healthy := !src.Disabled && (k.Received == 0 || rej <= k.Received/20) && k.Processed >= k.Accepted-1000
		rows = append(rows, row{Name: src.Name, Disabled: src.Disabled, Counts: k, Rejected: rej, Reasons: strings.Join(reasons, ", "), Healthy: healthy})
		total.Add(k)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	// Events per day over the last 30 days, from the per-day counters.
	today := c.cfg.Now().UTC().Truncate(24 * time.Hour)
	daily, err := c.cfg.Store.DailyEvents(r.Context(), today.AddDate(0, 0, -29))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	days := make([]string, 30)
	vals := make([]float64, 30)
	for i := range days {
		d := today.AddDate(0, 0, i-29)
		days[i] = d.Format("Jan 2")
		vals[i] = float64(daily[d.Format(time.DateOnly)])
	}
	chartURL := svgImage(chart.Bars{Title: "Events accepted per day (last 30 days)", YLabel: "events", Categories: days,
		Series: []chart.BarSeries{{Name: "events", Values: vals}}, Width: 900, Height: 280}.SVG())
	c.render(w, r, s, "overview", map[string]any{"Profiles": profiles, "Sources": rows, "Total": total, "DailyChart": chartURL})
}

// resolve turns a reference — "type:value", a profile id, or a bare
// e-mail address, phone number or user id — into the canonical profile id
// (profile.Service.Resolve, as the API resolves one). Only the store
// saying "not found" moves on to the next reading of a bare reference;
// any other error is the answer.
func (c *Console) resolve(r *http.Request, ref string) (string, error) {
	ref = strings.TrimSpace(ref)
	try := []string{ref}
	if !strings.Contains(ref, ":") {
		switch {
		case strings.Contains(ref, "@"):
			try = append(try, "email:"+ref)
		case strings.HasPrefix(ref, "+") || strings.Trim(ref, "0123456789 -()") == "" && ref != "":
			try = append(try, "phone:"+ref)
		default:
			try = append(try, "user_id:"+ref)
		}
	}
	for _, t := range try {
		id, err := c.profiles.Resolve(r.Context(), t)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue
		}
		return id, err
	}
	return "", kith.Errorf(kith.ENOTFOUND, "no customer has %q", ref)
}

// search serves GET /customers?q=: one match opens the customer.
func (c *Console) search(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query().Get("q")
	if strings.TrimSpace(q) == "" {
		c.render(w, r, s, "search", nil)
		return
	}
	id, err := c.resolve(r, q)
	if err == nil {
		http.Redirect(w, r, "/customers/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	if kith.ErrorCode(err) != kith.ENOTFOUND {
		c.fail(w, r, s, err)
		return
	}
	// Not an identifier: a name prefix, as typed and capitalised.
	found := map[string]bool{}
	var ids []string
	if !strings.ContainsAny(q, ":@") && s.tok.HasScope(kith.ScopePIIRead) {
		// Names are personal: only tokens that may see them search by them.
		q = strings.TrimSpace(q)
		prefixes := []string{q}
		if r, n := utf8.DecodeRuneInString(q); n > 0 && unicode.ToUpper(r) != r {
			prefixes = append(prefixes, string(unicode.ToUpper(r))+q[n:])
		}
		for _, p := range prefixes {
			more, err := c.cfg.Store.FindByName(r.Context(), p, 20)
			if err != nil {
				c.fail(w, r, s, err)
				return
			}
			for _, id := range more {
				if !found[id] {
					found[id] = true
					ids = append(ids, id)
				}
			}
		}
	}
	switch len(ids) {
	case 0:
		w.WriteHeader(http.StatusNotFound)
		msg := "No customer has that identifier or a name starting with it."
		if !s.tok.HasScope(kith.ScopePIIRead) {
			msg = "No customer has that identifier (searching by name needs the pii:read scope)."
		}
		c.render(w, r, s, "search", map[string]any{"Query": q, "Error": msg})
	case 1:
		http.Redirect(w, r, "/customers/"+url.PathEscape(ids[0]), http.StatusSeeOther)
	default:
		type hit struct{ ID, Name string }
		var hits []hit
		for _, id := range ids {
			name := ""
			ts, err := c.cfg.Store.Traits(r.Context(), id)
			if err != nil {
				c.fail(w, r, s, err)
				return
			}
			for _, t := range ts {
				if t.Key == "firstName" || t.Key == "lastName" || t.Key == "name" {
					var v string
					_ = json.Unmarshal(t.Value, &v)
					name = strings.TrimSpace(name + " " + v)
				}
			}
			hits = append(hits, hit{id, name})
		}
		c.render(w, r, s, "search", map[string]any{"Query": q, "Hits": hits})
	}
}

// timelineRow is one event on the customer page.
type timelineRow struct {
	At      time.Time
	Channel string
	Type    string
	Name    string
	Detail  string
}

// channelOf tells which channel an event came through: an import's file,
// an SDK's library, else its source.
func channelOf(raw json.RawMessage, source string) string {
	var v struct {
		Context struct {
			Library struct{ Name string }
			Import  struct{ File string }
			App     *struct{ Name string }
		}
	}
	_ = json.Unmarshal(raw, &v)
	switch {
	case v.Context.Import.File != "":
		return "import: " + v.Context.Import.File
	case v.Context.App != nil || strings.HasPrefix(v.Context.Library.Name, "analytics-swift") || strings.HasPrefix(v.Context.Library.Name, "analytics-kotlin"):
		return "app"
	case v.Context.Library.Name == "analytics.js":
		return "web"
	}
	return source
}

// customer serves GET /customers/{ref}: the Customer 360 page.
func (c *Console) customer(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	id, err := c.resolve(r, r.PathValue("ref"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v, err := c.profiles.View(ctx, id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	traits, ids, merges, memberships := v.Traits, v.Identities, v.Merges, v.Memberships
	pii := s.tok.HasScope(kith.ScopePIIRead)
	if !pii {
		traits, ids, merges = privacy.MaskTraits(traits, c.cfg.Audiences), privacy.MaskIdentities(ids), privacy.MaskMerges(merges)
		memberships = slices.DeleteFunc(memberships, func(m kith.Member) bool { return c.checkSaved(s, m.Audience) != nil })
	}
	var event, predicted []kith.Trait
	for _, t := range traits {
		if t.Provenance == kith.ProvenancePredicted {
			predicted = append(predicted, t)
		} else {
			event = append(event, t)
		}
	}
	rows, next, err := c.timeline(r, s, id, pii)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	name := ""
	for _, t := range event {
		if t.Key == "firstName" || t.Key == "lastName" {
			var part string
			_ = json.Unmarshal(t.Value, &part)
			name = strings.TrimSpace(name + " " + part)
		}
	}
	c.render(w, r, s, "customer", map[string]any{
		"ID": id, "Name": name, "Summary": v.Profile, "Traits": event, "Predicted": predicted,
		"Identities": ids, "Merges": merges, "Timeline": rows, "Next": next, "EventFilter": r.URL.Query().Get("event"),
		"ChannelFilter": r.URL.Query().Get("channel"), "Channels": []string{"web", "app", "import: orders.csv", "import: crm_contacts.csv", "import: email_engagement.csv"},
		"Audiences": memberships, "Consent": v.Consent, "ConsentHistory": v.ConsentHistory, "DMP": v.ThirdPartyAudiences,
	})
}

// timeline reads one page of the customer's events, newest first:
// filtered by event name in the store, and by channel (which is read from
// each event) over at most 2,000 entries per page.
func (c *Console) timeline(r *http.Request, s *session, id string, pii bool) ([]timelineRow, string, error) {
	const pageSize, scanMax = 50, 2000
	channel := r.URL.Query().Get("channel")
	q := kith.TimelineQuery{Limit: pageSize + 1, Event: r.URL.Query().Get("event")}
	if channel != "" {
		q.Limit = 500
	}
	if b := r.URL.Query().Get("before"); b != "" {
		var us, seq int64
		if _, err := fmt.Sscanf(b, "%d.%d", &us, &seq); err == nil {
			q.Before = &kith.TimelineCursor{Timestamp: time.UnixMicro(us).UTC(), Seq: seq}
		}
	}
	srcs, err := c.cfg.Store.Sources(r.Context())
	if err != nil {
		return nil, "", err
	}
	names := map[string]string{}
	for _, src := range srcs {
		names[src.ID] = src.Name
	}
	var rows []timelineRow
	var cursors []string // the position after each row
	atStart := false     // the scan reached the oldest event
	lastScanned := ""    // the position after the last event scanned
	for scanned := 0; scanned < scanMax && len(rows) <= pageSize; {
		entries, err := c.cfg.Store.Timeline(r.Context(), id, q)
		if err != nil {
			return nil, "", err
		}
		scanned += len(entries)
		seqs := make([]int64, len(entries))
		pos := map[int64]string{}
		for i, e := range entries {
			seqs[i] = e.Seq
			pos[e.Seq] = fmt.Sprintf("%d.%d", e.Timestamp.UnixMicro(), e.Seq)
		}
		msgs, err := c.cfg.Store.EventsBySeq(r.Context(), seqs)
		if err != nil {
			return nil, "", err
		}
		for _, m := range msgs {
			ch := channelOf(m.Raw, names[m.SourceID])
			if channel != "" && ch != channel {
				continue
			}
			raw := m.Raw
			if !pii {
				raw = privacy.MaskEvent(raw)
			}
			var v struct {
				Properties map[string]any `json:"properties"`
			}
			_ = json.Unmarshal(raw, &v)
			var parts []string
			for _, k := range []string{"order_id", "revenue", "name", "category", "price", "campaign_name", "path"} {
				if x, ok := v.Properties[k]; ok {
					parts = append(parts, fmt.Sprintf("%s %v", k, x))
				}
			}
			rows = append(rows, timelineRow{At: m.Timestamp, Channel: ch, Type: m.Type, Name: m.Event, Detail: strings.Join(parts, " · ")})
			cursors = append(cursors, pos[m.Seq])
		}
		if len(entries) < q.Limit {
			atStart = true
			break
		}
		last := entries[len(entries)-1]
		q.Before = &kith.TimelineCursor{Timestamp: last.Timestamp, Seq: last.Seq}
		lastScanned = pos[last.Seq]
		if channel == "" {
			break
		}
	}
	next := ""
	switch {
	case len(rows) > pageSize:
		rows, next = rows[:pageSize], cursors[pageSize-1]
	case channel != "" && !atStart:
		next = lastScanned // the scan limit stopped it: older events follow
	}
	return rows, next, nil
}

// export serves GET /customers/{ref}/export: the data-subject document,
// the one the API's export hands out (profile.Service.Export); a failed
// read fails the download rather than leave a part out.
func (c *Console) export(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := c.resolve(r, r.PathValue("ref"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	doc, err := c.profiles.Export(r.Context(), id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`-export.json"`)
	_ = json.NewEncoder(w).Encode(doc)
}

// erase serves POST /customers/{ref}/erase.
func (c *Console) erase(w http.ResponseWriter, r *http.Request, s *session) {
	if c.cfg.Eraser == nil {
		http.Error(w, "erasure is not available on this server", http.StatusNotFound)
		return
	}
	ref := r.PostFormValue("identifier")
	if _, err := c.cfg.Eraser.Request(r.Context(), ref, r.PostFormValue("suppress") == "on", s.tok.ID); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/privacy", http.StatusSeeOther)
}

// audiences serves GET /audiences: definitions with sizes, and the
// builder.
func (c *Console) audiences(w http.ResponseWriter, r *http.Request, s *session) {
	type aud struct {
		kith.Definition
		Size  int64
		Trend template.HTML
	}
	var list []aud
	today := c.cfg.Now().UTC().Truncate(24 * time.Hour)
	if c.cfg.Audiences != nil {
		for _, d := range c.cfg.Audiences.Definitions(kith.KindAudience) {
			n, err := c.cfg.Store.AudienceSize(r.Context(), d.Key)
			if err != nil {
				c.fail(w, r, s, err)
				return
			}
			// The size at the end of each of the last 30 days, walking
			// back from now through each day's entries minus exits.
			net, err := c.cfg.Store.AudienceNetChanges(r.Context(), d.Key, today.AddDate(0, 0, -29))
			if err != nil {
				c.fail(w, r, s, err)
				return
			}
			sizes := make([]float64, 30)
			size := n
			for i := 29; i >= 0; i-- {
				sizes[i] = float64(size)
				size -= net[today.AddDate(0, 0, i-29).Format(time.DateOnly)]
			}
			list = append(list, aud{d, n, sparkline(sizes, "members over the last 30 days")})
		}
	}
	c.render(w, r, s, "audiences", map[string]any{"Audiences": list, "Definition": r.URL.Query().Get("definition")})
}

// audience serves GET /audiences/{key}: its definition, size and a page
// of members.
func (c *Console) audience(w http.ResponseWriter, r *http.Request, s *session) {
	key := r.PathValue("key")
	var def *kith.Definition
	if c.cfg.Audiences != nil {
		for _, d := range c.cfg.Audiences.Definitions(kith.KindAudience) {
			if d.Key == key {
				def = &d
			}
		}
	}
	if def == nil {
		c.fail(w, r, s, kith.Errorf(kith.ENOTFOUND, "no audience %q", key))
		return
	}
	if err := c.checkSaved(s, key); err != nil {
		c.fail(w, r, s, err)
		return
	}
	size, err := c.cfg.Store.AudienceSize(r.Context(), key)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	members, err := c.cfg.Store.Members(r.Context(), key, r.URL.Query().Get("after"), 101)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	next := ""
	if len(members) > 100 {
		members = members[:100]
		next = members[99].ProfileID
	}
	c.render(w, r, s, "audience", map[string]any{"Def": def, "Size": size, "Members": members, "Next": next})
}

// unmerge serves POST /customers/{ref}/unmerge: undoes one merge.
func (c *Console) unmerge(w http.ResponseWriter, r *http.Request, s *session) {
	if c.cfg.Unmerger == nil {
		http.Error(w, "unmerge is not available on this server", http.StatusNotFound)
		return
	}
	id, err := c.resolve(r, r.PathValue("ref"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	res, err := c.cfg.Unmerger.Unmerge(r.Context(), pipeline.Unmerge{Profile: id, MergeID: r.PostFormValue("merge"), By: s.tok.ID,
		Reason: strings.TrimSpace(r.PostFormValue("reason")), At: c.cfg.Now()})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/customers/"+url.PathEscape(res.Profiles[0]), http.StatusSeeOther)
}

// dryRun serves POST /audiences/dry-run: the builder's size and sample.
func (c *Console) dryRun(w http.ResponseWriter, r *http.Request, s *session) {
	def := r.PostFormValue("definition")
	data := map[string]any{"Definition": def}
	if c.cfg.Audiences == nil {
		data["Error"] = "audiences are not available on this server"
	} else if err := c.checkReads(s, def); err != nil {
		data["Error"] = kith.ErrorMessage(err)
	} else if n, sample, err := c.cfg.Audiences.DryRun(r.Context(), def, nil, 10); err != nil {
		data["Error"] = kith.ErrorMessage(err)
	} else {
		data["Size"], data["Sample"], data["Ran"] = n, sample, true
	}
	c.render(w, r, s, "audiences", data)
}

// validate serves POST /audiences/validate, the builder's live check: a
// JSON answer {ok, size} or {ok: false, error}.
func (c *Console) validate(w http.ResponseWriter, r *http.Request, s *session) {
	w.Header().Set("Content-Type", "application/json")
	out := map[string]any{"ok": false}
	if c.cfg.Audiences == nil {
		out["error"] = "audiences are not available on this server"
	} else if err := c.checkReads(s, r.PostFormValue("definition")); err != nil {
		out["error"] = kith.ErrorMessage(err)
	} else if n, _, err := c.cfg.Audiences.DryRun(r.Context(), r.PostFormValue("definition"), nil, 0); err != nil {
		out["error"] = kith.ErrorMessage(err)
	} else {
		out["ok"], out["size"] = true, n
	}
	_ = json.NewEncoder(w).Encode(out)
}

// checkReads refuses the builder's definition text if it reads personal
// data and the session's token lacks pii:read, as the API does.
func (c *Console) checkReads(s *session, text string) error {
	reads, err := c.cfg.Audiences.Reads(kith.Definition{Kind: kith.KindAudience, Key: "dry-run", Text: text})
	if err != nil {
		return err
	}
	return privacy.CheckReads(s.tok, "the dry run", reads)
}

// checkSaved refuses audience key's members to a session whose token
// lacks pii:read if the audience reads personal data, as the API does.
func (c *Console) checkSaved(s *session, key string) error {
	return privacy.CheckSaved(s.tok, c.cfg.Audiences, key)
}

// privacy serves GET /privacy: erasure requests and the audit log.
func (c *Console) privacy(w http.ResponseWriter, r *http.Request, s *session) {
	var erasures []kith.Erasure
	var err error
	if c.cfg.Eraser != nil {
		erasures, err = c.cfg.Eraser.Erasures(r.Context(), 50)
	} else {
		erasures, err = c.cfg.Store.Erasures(r.Context(), 50)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	data := map[string]any{"Erasures": erasures}
	if s.tok.HasScope(kith.ScopeAuditRead) {
		q := kith.AuditQuery{Action: r.URL.Query().Get("action"), TokenID: r.URL.Query().Get("token"), Limit: 100, Newest: true}
		if c.cfg.AuditSync != nil {
			c.cfg.AuditSync()
		}
		entries, err := c.cfg.Store.AuditLog(r.Context(), q)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		data["Audit"], data["Action"], data["Token"] = entries, q.Action, q.TokenID
	}
	c.render(w, r, s, "privacy", data)
}

// fail shows an error page with the status its code answers with on the
// API too (httperr), and the API's Retry-After when a retry may succeed.
// An internal error's detail, or an unknown code, goes to the log, not
// the page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := kith.ErrorCode(err)
	status, known := httperr.Status(code)
	msg := kith.ErrorMessage(err)
	if status == http.StatusInternalServerError {
		c.cfg.Logger.Error("console", "path", r.URL.Path, "code", code, "known", known, "err", err)
		msg = "Something went wrong; the server log says what."
	}
	httperr.SetRetryAfter(w.Header(), code)
	w.WriteHeader(status)
	c.render(w, r, s, "error", map[string]any{"Message": msg})
}

// sparkline draws values as a small line, with the first and last value
// in its tooltip and accessible name.
func sparkline(values []float64, what string) template.HTML {
	const w, h = 120.0, 24.0
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = min(lo, v), max(hi, v)
	}
	var pts []string
	for i, v := range values {
		x := w * float64(i) / float64(max(len(values)-1, 1))
		y := h - 2
		if hi > lo {
			y = 2 + (h-4)*(1-(v-lo)/(hi-lo))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	label := fmt.Sprintf("%s: from %.0f to %.0f", what, values[0], values[len(values)-1])
	return template.HTML(fmt.Sprintf(`<svg width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s"><title>%s</title><polyline points="%s" fill="none" stroke="currentColor" stroke-width="1.5"/></svg>`,
		w, h, w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(label), strings.Join(pts, " ")))
}
