package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/privacy"
)

// DestinationEngine is the delivery engine as the destinations API drives
// it (activation.Engine).
type DestinationEngine interface {
	// Changed tells the engine that the API changed the stored state of
	// the destination with this id: created, paused, resumed or deleted
	// it. The engine makes that destination's worker match the store: it
	// starts or stops it, or restarts it so that it reads its settings,
	// progress and retrying deliveries again.
	Changed(ctx context.Context, id string) error
	// State returns how a destination's worker is doing; ok is false when
	// no worker runs for it (paused, or not loaded yet).
	State(id string) (s activation.State, ok bool)
	// Replay sends a destination's dead letters again, those with the
	// given ids or all when ids is empty: they go back among its
	// retrying deliveries, due now. It returns how many.
	Replay(ctx context.Context, id string, ids []string) (int, error)
	// ReplayLog sends again the events that arrived in [from, to).
	ReplayLog(ctx context.Context, id string, from, to time.Time) (activation.Span, error)
	// SetPaused pauses or resumes a destination by name: the one way
	// both the API and the console do it.
	SetPaused(ctx context.Context, name string, paused bool) (kith.Destination, error)
}

// destinationRoutes registers the destination routes. Creating and
// deleting a destination takes admin: a destination sends personal data
// out of Kith to any URL, so making one is as powerful as reading every
// profile. Pausing, resuming, replaying dead letters and sending a test
// message act on a destination an admin made and send nothing new to
// anyone: sources:write, the scope that manages the way data comes in.
// The settings (secrets redacted) and the accounting hold no personal
// data: sources:read. The deliveries hold messages about people:
// profiles:read, masked as events are unless the token has pii:read.
func (s *Server) destinationRoutes() {
	s.route("POST /v1/destinations", kith.ScopeAdmin, s.handleCreateDestination)
	s.route("GET /v1/destinations", kith.ScopeSourcesRead, s.handleListDestinations)
	s.route("GET /v1/destinations/{name}", kith.ScopeSourcesRead, s.named(s.handleGetDestination))
	s.route("DELETE /v1/destinations/{name}", kith.ScopeAdmin, s.named(s.handleDeleteDestination))
	s.route("POST /v1/destinations/{name}/pause", kith.ScopeSourcesWrite, s.named(s.handlePauseDestination(true)))
	s.route("POST /v1/destinations/{name}/resume", kith.ScopeSourcesWrite, s.named(s.handlePauseDestination(false)))
	s.route("POST /v1/destinations/{name}/replay", kith.ScopeSourcesWrite, s.needs(s.cfg.Destinations != nil, "replaying dead letters is", s.named(s.handleReplayDestination)))
	s.route("POST /v1/destinations/{name}/test", kith.ScopeSourcesWrite, s.named(s.handleTestDestination))
	s.route("GET /v1/destinations/{name}/deliveries", kith.ScopeProfilesRead, s.named(s.handleDeliveries))
}

// named serves a request about the destination the path names, which it
// reads first (404 when there is none).
func (s *Server) named(h func(w http.ResponseWriter, r *http.Request, d kith.Destination)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := s.store.Destination(r.Context(), r.PathValue("name"))
		if err != nil {
			s.error(w, r, err)
			return
		}
		h(w, r, d)
	}
}

// maxDestinationName is the longest destination name, in bytes.
const maxDestinationName = 100

// destinationBody is the body of POST /v1/destinations.
type destinationBody struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Config     json.RawMessage   `json:"config"`
	Events     eventSubscription `json:"events"`
	Audiences  []string          `json:"audiences"`
	AudienceAs string            `json:"audienceAs"`
	Traits     []string          `json:"traits"`
	Consent    []string          `json:"consent"`
	Mapping    *kith.Mapping     `json:"mapping"`
	RateLimit  float64           `json:"rateLimit"`
}

// eventSubscription is the "events" member of a destination's body: true
// subscribes to every accepted event, false or absent to none, and an
// object {"types","events","sources"} to those it selects.
type eventSubscription struct{ filter *kith.EventFilter }

// UnmarshalJSON implements json.Unmarshaler.
func (e *eventSubscription) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "true":
		e.filter = &kith.EventFilter{}
		return nil
	case string(b) == "false" || string(b) == "null":
		e.filter = nil
		return nil
	case len(b) > 0 && b[0] == '{':
		var f kith.EventFilter
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) && typeErr.Field != "" {
				return fmt.Errorf("events.%s: must be a list of strings", typeErr.Field)
			}
			if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				return fmt.Errorf("events.%s: unknown field (types, events and sources select events)", strings.Trim(name, `"`))
			}
			return fmt.Errorf("events: %w", err)
		}
		e.filter = &f
		return nil
	}
	return errors.New(`events: must be true, false or a filter {"types":[…],"events":[…],"sources":[…]}`)
}

// destination checks the body and returns the destination it describes,
// with the webhook signing secret it generated when none was given ("" if
// it generated none). Errors are EINVALID and name the field; the type,
// its config and the subscription settings are checked by the one check
// the engine also relies on (activation.Validate).
func (b destinationBody) destination(now time.Time) (kith.Destination, string, error) {
	switch {
	case b.Name == "":
		return kith.Destination{}, "", kith.Errorf(kith.EINVALID, "name: required (1 to %d bytes)", maxDestinationName)
	case len(b.Name) > maxDestinationName:
		return kith.Destination{}, "", kith.Errorf(kith.EINVALID, "name: at most %d bytes (it is %d)", maxDestinationName, len(b.Name))
	}
	config, secret := b.Config, ""
	if b.Type == kith.DestinationWebhook {
		config, secret = withWebhookSecret(config)
	}
	d := kith.Destination{
		ID: kith.NewID("dst_"), Name: b.Name, Type: b.Type, Config: config, Events: b.Events.filter,
		Audiences: b.Audiences, AudienceAs: b.AudienceAs, Traits: b.Traits, Consent: b.Consent, Mapping: b.Mapping, RateLimit: b.RateLimit,
		CreatedAt: now.UTC().Truncate(time.Microsecond),
	}
	if err := activation.Validate(d); err != nil {
		return kith.Destination{}, "", err
	}
	return d, secret, nil
}

// withWebhookSecret fills in a new signing secret when a webhook's config
// is an object without one, and returns it; secrets are shown once, like
// write keys. Any other config is returned as given, for validation to
// name what is wrong with it.
func withWebhookSecret(config json.RawMessage) (json.RawMessage, string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(config, &m) != nil || m == nil {
		return config, ""
	}
	if v, ok := m["secret"]; ok && string(v) != `""` && string(v) != "null" {
		return config, ""
	}
	secret := activation.NewWebhookSecret()
	m["secret"], _ = json.Marshal(secret)
	out, err := json.Marshal(m)
	if err != nil {
		return config, ""
	}
	return out, secret
}

// DestinationAccount is one destination's accounting as the API shows it
// (activation.Account, the one computation of it the console shares).
type DestinationAccount = activation.Account

// DestinationStats is one destination's accounting in GET /v1/stats.
type DestinationStats struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Paused bool   `json:"paused"`
	DestinationAccount
}

// DestinationView is a destination as the API serves it: its settings,
// its config's secrets redacted (activation.Redact, the type's own
// declaration of which fields are secret), its accounting and progress,
// and how its worker is doing when this server runs the engine.
type DestinationView struct {
	kith.Destination
	DestinationAccount
	Progress kith.DestinationProgress `json:"progress"`
	Worker   *DestinationWorker       `json:"worker,omitempty"`
	// Secret is the signing secret Kith generated for a webhook created
	// without one: in the creation's answer only.
	Secret string `json:"secret,omitempty"`
}

// DestinationWorker is how a destination's worker is doing
// (activation.State).
type DestinationWorker struct {
	Running bool `json:"running"`
	// Waiting: requests failed so often in a row that new messages wait
	// in the log until a retry goes through.
	Waiting   bool       `json:"waiting"`
	NextRetry *time.Time `json:"nextRetry,omitempty"`
	// LastError is the error of the latest failed request.
	LastError string               `json:"lastError,omitempty"`
	Attempts  []DestinationAttempt `json:"attempts"`
}

// DestinationAttempt is one of the latest requests to a destination.
type DestinationAttempt struct {
	At        time.Time `json:"at"`
	Messages  int       `json:"messages"`
	Status    int       `json:"status,omitempty"`
	LatencyMs float64   `json:"latencyMs"`
	Outcome   string    `json:"outcome"`
	Error     string    `json:"error,omitempty"`
}

// streamHeads are the ends of the streams destinations read, read once
// per request.
type streamHeads = activation.Heads

// heads reads the log head, and the change stream's head when changes
// is true (activation.ReadHeads).
func (s *Server) heads(ctx context.Context, changes bool) (streamHeads, error) {
	return activation.ReadHeads(ctx, s.store, changes)
}

// anyAudiences reports whether one of ds subscribes to audiences.
func anyAudiences(ds ...kith.Destination) bool { return activation.AnyAudiences(ds...) }

// account returns a destination's accounting and progress
// (activation.Summarize).
func (s *Server) account(ctx context.Context, d kith.Destination, c kith.DestinationCounts, h streamHeads) (DestinationAccount, kith.DestinationProgress, error) {
	return activation.Summarize(ctx, s.store, d, c, h, s.cfg.Now())
}

// view returns d as the API serves it.
func (s *Server) view(ctx context.Context, d kith.Destination, c kith.DestinationCounts, h streamHeads) (DestinationView, error) {
	a, p, err := s.account(ctx, d, c, h)
	if err != nil {
		return DestinationView{}, err
	}
	v := DestinationView{Destination: d, DestinationAccount: a, Progress: p}
	v.Config = activation.Redact(d.Type, d.Config)
	if s.cfg.Destinations != nil {
		v.Worker = &DestinationWorker{Attempts: []DestinationAttempt{}}
		if st, ok := s.cfg.Destinations.State(d.ID); ok {
			v.Worker.Running, v.Worker.Waiting = st.Running, st.Waiting
			if !st.NextRetry.IsZero() {
				v.Worker.NextRetry = &st.NextRetry
			}
			for _, at := range st.Attempts {
				v.Worker.Attempts = append(v.Worker.Attempts, DestinationAttempt{At: at.At, Messages: at.Messages, Status: at.Status,
					LatencyMs: float64(at.Latency.Microseconds()) / 1000, Outcome: at.Outcome, Error: at.Error})
			}
			v.Worker.LastError = st.LastError()
		}
	}
	return v, nil
}

// destinationStats returns every destination's accounting, by name, for
// GET /v1/stats and /metrics. A destination deleted while it is read is
// left out.
func (s *Server) destinationStats(ctx context.Context) ([]DestinationStats, error) {
	ds, counts, h, err := s.destinations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]DestinationStats, 0, len(ds))
	for _, d := range ds {
		a, _, err := s.account(ctx, d, counts[d.ID], h)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, DestinationStats{ID: d.ID, Name: d.Name, Type: d.Type, Paused: d.Paused, DestinationAccount: a})
	}
	return out, nil
}

// destinations reads every destination with its counts and the heads of
// the streams they read.
func (s *Server) destinations(ctx context.Context) ([]kith.Destination, map[string]kith.DestinationCounts, streamHeads, error) {
	ds, err := s.store.Destinations(ctx)
	if err != nil {
		return nil, nil, streamHeads{}, fmt.Errorf("listing destinations: %w", err)
	}
	counts, err := s.store.DestinationCounts(ctx)
	if err != nil {
		return nil, nil, streamHeads{}, fmt.Errorf("counting deliveries: %w", err)
	}
	h, err := s.heads(ctx, anyAudiences(ds...))
	return ds, counts, h, err
}

// changed tells the engine, if this server runs one, that the API changed
// a destination. The change is stored whatever the engine answers, so a
// failure is logged rather than failing the request; the engine reads
// the store again when it restarts.
func (s *Server) changed(r *http.Request, d kith.Destination) {
	if s.cfg.Destinations == nil {
		return
	}
	if err := s.cfg.Destinations.Changed(r.Context(), d.ID); err != nil {
		s.log.Error("destination changed, but the delivery engine could not take the change up", "destination", d.Name, "err", err)
	}
}

func (s *Server) handleCreateDestination(w http.ResponseWriter, r *http.Request) {
	var body destinationBody
	if err := decodeJSON(r, &body); err != nil {
		s.error(w, r, err)
		return
	}
	d, secret, err := body.destination(s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	noteAudit(r, "name="+d.Name)
	ctx := r.Context()
	// A new destination starts at the ends of both streams: it receives
	// what happens from now on, not the history; but first the current
	// members of the audiences it subscribes to.
	h, err := s.heads(ctx, true)
	if err != nil {
		s.error(w, r, err)
		return
	}
	start := kith.DestinationProgress{LogSeq: h.Log, ChangeSeq: h.Changes}
	if len(d.Audiences) > 0 {
		start.Sync = 1
	}
	if len(d.Traits) > 0 {
		start.TraitSeq = h.Traits
	}
	if err := s.store.CreateDestination(ctx, d, start); err != nil {
		if kith.ErrorCode(err) == kith.ECONFLICT {
			err = kith.Errorf(kith.ECONFLICT, "name: a destination named %q exists", d.Name)
		}
		s.error(w, r, err)
		return
	}
	s.changed(r, d)
	v, err := s.view(ctx, d, kith.DestinationCounts{}, h)
	if err != nil {
		s.error(w, r, err)
		return
	}
	v.Secret = secret
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) handleListDestinations(w http.ResponseWriter, r *http.Request) {
	ds, counts, h, err := s.destinations(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := make([]DestinationView, 0, len(ds))
	for _, d := range ds {
		v, err := s.view(r.Context(), d, counts[d.ID], h)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue // deleted meanwhile
		} else if err != nil {
			s.error(w, r, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (s *Server) handleGetDestination(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	ctx := r.Context()
	counts, err := s.store.DestinationCounts(ctx)
	if err != nil {
		s.error(w, r, fmt.Errorf("counting deliveries: %w", err))
		return
	}
	h, err := s.heads(ctx, anyAudiences(d))
	if err != nil {
		s.error(w, r, err)
		return
	}
	v, err := s.view(ctx, d, counts[d.ID], h)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleDeleteDestination(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	if err := s.store.DeleteDestination(r.Context(), d.ID); err != nil {
		s.error(w, r, err)
		return
	}
	s.changed(r, d)
	w.WriteHeader(http.StatusNoContent)
}

// handlePauseDestination serves pause (paused true) and resume: a paused
// destination keeps its position and its retries, and events that arrive
// meanwhile wait in the log.
func (s *Server) handlePauseDestination(paused bool) func(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	return func(w http.ResponseWriter, r *http.Request, d kith.Destination) {
		var err error
		switch {
		case d.Paused == paused:
		case s.cfg.Destinations != nil:
			d, err = s.cfg.Destinations.SetPaused(r.Context(), d.Name, paused)
		default:
			d.Paused = paused
			err = s.store.UpdateDestination(r.Context(), d)
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		s.handleGetDestination(w, r, d)
	}
}

// maxReplayIDs bounds the dead letters one replay may name.
const maxReplayIDs = 1000

// handleReplayDestination sends a destination's dead letters again:
// those named by the optional body {"ids": [...]}, or all of them. The
// engine puts them back among the retrying deliveries, due now, through
// the destination's worker, so that what it holds in memory stays what
// is stored: {"replayed": n}. A body {"from": t1, "to": t2} (RFC 3339)
// replays the log instead: the events that arrived in [t1, t2) are sent
// again, with ids of the replay's own: 202 {"replaying": span}.
func (s *Server) handleReplayDestination(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	var body struct {
		IDs  []string   `json:"ids"`
		From *time.Time `json:"from"`
		To   *time.Time `json:"to"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &body); err != nil {
			s.error(w, r, err)
			return
		}
	}
	if body.From != nil || body.To != nil {
		switch {
		case len(body.IDs) > 0:
			s.error(w, r, kith.Errorf(kith.EINVALID, "ids: give dead-letter ids or a time range (from, to), not both"))
			return
		case body.From == nil || body.To == nil:
			s.error(w, r, kith.Errorf(kith.EINVALID, "from, to: a replay of the log needs both (RFC 3339 times)"))
			return
		}
		noteAudit(r, fmt.Sprintf("from=%s to=%s", body.From.UTC().Format(time.RFC3339), body.To.UTC().Format(time.RFC3339)))
		sp, err := s.cfg.Destinations.ReplayLog(r.Context(), d.ID, *body.From, *body.To)
		if err != nil {
			s.error(w, r, fmt.Errorf("destination %s: replaying the log: %w", d.Name, err))
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]activation.Span{"replaying": sp})
		return
	}
	if len(body.IDs) > maxReplayIDs {
		s.error(w, r, kith.Errorf(kith.EINVALID, "ids: at most %d (it has %d); replay all with no ids", maxReplayIDs, len(body.IDs)))
		return
	}
	n, err := s.cfg.Destinations.Replay(r.Context(), d.ID, body.IDs)
	if err != nil {
		s.error(w, r, fmt.Errorf("destination %s: replaying dead letters: %w", d.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
}

// testResult is the answer of POST /v1/destinations/{name}/test.
type testResult struct {
	// OK says the destination took the message (2xx).
	OK        bool    `json:"ok"`
	MessageID string  `json:"messageId"`
	Status    int     `json:"status,omitempty"`
	LatencyMs float64 `json:"latencyMs"`
	// Outcome is what the engine would make of the answer: delivered,
	// retry or dead (activation.Policy).
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// handleTestDestination sends one test message (a track "Kith Test
// Message" about no one) to a destination now, through the type's own
// sender, and answers what came back. Nothing is recorded.
func (s *Server) handleTestDestination(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	sender, err := activation.NewSender(d, tr)
	if err != nil {
		s.error(w, r, fmt.Errorf("destination %s: its config: %w", d.Name, err))
		return
	}
	now := s.cfg.Now().UTC()
	id := kith.NewID("test_")
	body, err := json.Marshal(map[string]any{
		"type": "track", "event": "Kith Test Message", "messageId": id, "anonymousId": "kith-test",
		"properties": map[string]any{"test": true}, "timestamp": now.Format(time.RFC3339Nano),
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	res := sender.Send(r.Context(), id, []activation.Message{{ID: id, Body: body}})
	dec := activation.Policy{}.Decide(res, 1, now, now)
	writeJSON(w, http.StatusOK, testResult{OK: dec.Outcome == activation.Delivered, MessageID: id, Status: res.Status,
		LatencyMs: float64(res.Latency.Microseconds()) / 1000, Outcome: dec.Outcome.String(), Error: dec.Error})
}

// handleDeliveries serves GET /v1/destinations/{name}/deliveries?dead=&after=&limit=:
// the destination's retrying (dead=false, the default) or dead-lettered
// deliveries by id, each with its last status and error. Their messages
// are masked as events are unless the token has pii:read.
func (s *Server) handleDeliveries(w http.ResponseWriter, r *http.Request, d kith.Destination) {
	q := r.URL.Query()
	dead := false
	if v := q.Get("dead"); v != "" {
		var err error
		if dead, err = strconv.ParseBool(v); err != nil {
			s.error(w, r, kith.Errorf(kith.EINVALID, "dead must be true or false"))
			return
		}
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		s.error(w, r, err)
		return
	}
	after := q.Get("after")
	if next := q.Get("next"); next != "" {
		after = next // cursor.next of the previous page
	}
	ds, err := s.store.Deliveries(r.Context(), d.ID, dead, after, limit+1)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var p page
	if len(ds) > limit {
		ds = ds[:limit]
		p.Cursor = cursor{HasMore: true, Next: ds[limit-1].ID}
	}
	if ds == nil {
		ds = []kith.Delivery{}
	}
	if !tokenOf(r).HasScope(kith.ScopePIIRead) {
		for i := range ds {
			ds[i].Body = privacy.MaskEvent(ds[i].Body)
		}
	}
	p.Data = ds
	writeJSON(w, http.StatusOK, p)
}

// writeDestinationMetrics writes the destinations' accounting in the
// Prometheus text format, labelled by destination name.
func writeDestinationMetrics(b io.Writer, ds []DestinationStats) {
	series := func(name, typ, help string, value func(d DestinationStats) int64) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, d := range ds {
			fmt.Fprintf(b, "%s{destination=%q} %d\n", name, d.Name, value(d))
		}
	}
	series("kith_destination_delivered_total", "counter", "Messages a destination took, per destination.", func(d DestinationStats) int64 { return d.Delivered })
	series("kith_destination_retrying", "gauge", "Messages waiting for a retry, per destination.", func(d DestinationStats) int64 { return d.Retrying })
	series("kith_destination_dead_lettered", "gauge", "Messages on the dead-letter list, per destination.", func(d DestinationStats) int64 { return d.DeadLettered })
	series("kith_destination_pending", "gauge", "Events and audience changes a destination has not handled yet (an upper bound), per destination.", func(d DestinationStats) int64 { return d.Pending })
	fmt.Fprintf(b, "# HELP kith_destination_filtered_total Messages not sent to a destination, per destination and reason.\n# TYPE kith_destination_filtered_total counter\n")
	for _, d := range ds {
		reasons := make([]string, 0, len(d.FilteredBy))
		for reason := range d.FilteredBy {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		for _, reason := range reasons {
			fmt.Fprintf(b, "kith_destination_filtered_total{destination=%q,reason=%q} %d\n", d.Name, reason, d.FilteredBy[reason])
		}
	}
}
