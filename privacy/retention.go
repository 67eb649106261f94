package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kithcdp/kith"
)

// Duration is a retention period: Go's units plus d (day), w (week),
// mo (30 days) and y (365 days), as "13mo", "7y", "90d", "36h". Zero keeps
// forever.
type Duration time.Duration

// ParseDuration reads a retention period.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"mo", 30 * 24 * time.Hour}, {"y", 365 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseFloat(n, 64); err == nil && v >= 0 {
				return Duration(time.Duration(v * float64(u.unit))), nil
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("retention: %q is not a period like 90d, 13mo, 7y or 36h", s)
	}
	return Duration(d), nil
}

// UnmarshalJSON reads "13mo" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("retention: a period is a string like \"13mo\"")
	}
	v, err := ParseDuration(s)
	*d = v
	return err
}

// MarshalJSON writes the period in hours.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Policy says how long Kith keeps events and profiles. For an event the
// most specific rule applies: its event name (a track event, a page or
// screen name) or call type ("page", "identify", …), else its source,
// else the default. Zero keeps forever.
type Policy struct {
	Default Duration            `json:"default"`
	Sources map[string]Duration `json:"sources,omitempty"`
	Events  map[string]Duration `json:"events,omitempty"`
	// ProfileInactivity erases a whole profile whose latest event is older
	// than this (e.g. "3y").
	ProfileInactivity Duration `json:"profileInactivity"`
	// ThirdParty is how long third-party (DMP) audiences last when their
	// file gives no expiry; it is applied when they are imported.
	ThirdParty Duration `json:"thirdParty"`
}

// LoadPolicy reads a policy file (JSON).
func LoadPolicy(path string) (Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("retention policy: %w", err)
	}
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("retention policy %s: %w", path, err)
	}
	return p, nil
}

// keep returns how long an event is kept and which rule says so.
func (p Policy) keep(m kith.Message, source string) (time.Duration, string) {
	for _, k := range []string{m.Event, m.Type} {
		if d, ok := p.Events[k]; ok && k != "" {
			return time.Duration(d), "event:" + k
		}
	}
	if d, ok := p.Sources[source]; ok {
		return time.Duration(d), "source:" + source
	}
	return time.Duration(p.Default), "default"
}

// shortest is the shortest period of any event rule (0 if none expires).
func (p Policy) shortest() time.Duration {
	min := time.Duration(0)
	consider := func(d Duration) {
		if d > 0 && (min == 0 || time.Duration(d) < min) {
			min = time.Duration(d)
		}
	}
	consider(p.Default)
	for _, d := range p.Sources {
		consider(d)
	}
	for _, d := range p.Events {
		consider(d)
	}
	return min
}

// SweepReport is what one retention sweep removed.
type SweepReport struct {
	StartedAt       time.Time        `json:"startedAt"`
	FinishedAt      time.Time        `json:"finishedAt"`
	ProfilesScanned int64            `json:"profilesScanned"`
	EventsDeleted   int64            `json:"eventsDeleted"`
	EventsByRule    map[string]int64 `json:"eventsByRule"`
	ProfilesErased  int64            `json:"profilesErased"`
	ThirdParty      int64            `json:"thirdPartyExpired"`
	Error           string           `json:"error,omitempty"`
}

// SweepStore is what the Sweeper reads and deletes: the profiles a page
// at a time, each one's timeline, identities and events, and the sources
// whose rules apply; expiring events and third-party audiences.
type SweepStore interface {
	Sources(ctx context.Context) ([]kith.Source, error)
	ProfileIDs(ctx context.Context, after string, limit int) ([]string, error)
	Profile(ctx context.Context, id string) (kith.ProfileSummary, error)
	Timeline(ctx context.Context, id string, q kith.TimelineQuery) ([]kith.TimelineEntry, error)
	Identities(ctx context.Context, id string) ([]kith.Identity, error)
	EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error)
	ExpireEvents(ctx context.Context, members []string, seqs []int64) (int64, error)
	PruneDMPAudiences(ctx context.Context, now time.Time) (int64, error)
}

// Sweeper enforces a retention policy: it walks the profiles a page at a
// time (pausing between pages, so ingest is never blocked for long),
// deletes each profile's events older than their rule allows (keeping
// the consent decisions they carried), erases
// profiles inactive for longer than allowed, and drops expired third-party
// audiences. Traits keep the values expired events set until the profile
// itself goes; audience aggregates are not recomputed.
type Sweeper struct {
	Store   SweepStore
	Service *Service // erases inactive profiles
	Policy  Policy
	Now     func() time.Time
	Logger  *slog.Logger
	// Page is the number of profiles per page (default 200) and Pause the
	// wait between pages (default 10 ms).
	Page  int
	Pause time.Duration

	mu     sync.Mutex
	last   SweepReport
	totals SweepReport
	// running keeps a manual sweep and a scheduled one from overlapping.
	running sync.Mutex
}

// Last returns the latest sweep's report and the totals since start.
func (sw *Sweeper) Last() (last, totals SweepReport) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.last, sw.totals
}

// Run sweeps every interval until ctx ends.
func (sw *Sweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := sw.Sweep(ctx); err != nil && ctx.Err() == nil {
				sw.logger().Error("retention sweep", "err", err)
			}
		}
	}
}

func (sw *Sweeper) logger() *slog.Logger {
	if sw.Logger == nil {
		return slog.Default()
	}
	return sw.Logger
}

// Sweep runs one sweep (waiting for one already running).
func (sw *Sweeper) Sweep(ctx context.Context) (SweepReport, error) {
	sw.running.Lock()
	defer sw.running.Unlock()
	now := time.Now
	if sw.Now != nil {
		now = sw.Now
	}
	page, pause := sw.Page, sw.Pause
	if page <= 0 {
		page = 200
	}
	if pause <= 0 {
		pause = 10 * time.Millisecond
	}
	at := now().UTC()
	rep := SweepReport{StartedAt: at, EventsByRule: map[string]int64{}}
	err := sw.sweep(ctx, at, page, pause, &rep)
	rep.FinishedAt = now().UTC()
	if err != nil {
		rep.Error = err.Error()
	}
	sw.mu.Lock()
	sw.last = rep
	sw.totals.ProfilesScanned += rep.ProfilesScanned
	sw.totals.EventsDeleted += rep.EventsDeleted
	sw.totals.ProfilesErased += rep.ProfilesErased
	sw.totals.ThirdParty += rep.ThirdParty
	if sw.totals.EventsByRule == nil {
		sw.totals.EventsByRule = map[string]int64{}
	}
	for k, v := range rep.EventsByRule {
		sw.totals.EventsByRule[k] += v
	}
	sw.mu.Unlock()
	if rep.EventsDeleted > 0 || rep.ProfilesErased > 0 || rep.ThirdParty > 0 {
		sw.logger().Info("retention sweep", "events", rep.EventsDeleted, "profiles", rep.ProfilesErased, "thirdParty", rep.ThirdParty)
	}
	return rep, err
}

func (sw *Sweeper) sweep(ctx context.Context, now time.Time, page int, pause time.Duration, rep *SweepReport) error {
	p := sw.Policy
	srcs, err := sw.Store.Sources(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, s := range srcs {
		names[s.ID] = s.Name
	}
	shortest := p.shortest()
	inactivity := time.Duration(p.ProfileInactivity)
	after := ""
	for shortest > 0 || inactivity > 0 {
		ids, err := sw.Store.ProfileIDs(ctx, after, page)
		if err != nil {
			return err
		}
		for _, id := range ids {
			rep.ProfilesScanned++
			if err := sw.profile(ctx, id, now, shortest, inactivity, names, rep); err != nil {
				return fmt.Errorf("retention: profile %s: %w", id, err)
			}
		}
		if len(ids) < page {
			break
		}
		after = ids[len(ids)-1]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	n, err := sw.Store.PruneDMPAudiences(ctx, now)
	rep.ThirdParty += n
	return err
}

func (sw *Sweeper) profile(ctx context.Context, id string, now time.Time, shortest, inactivity time.Duration, names map[string]string, rep *SweepReport) error {
	sum, err := sw.Store.Profile(ctx, id)
	if kith.ErrorCode(err) == kith.ENOTFOUND {
		return nil // merged or erased meanwhile
	} else if err != nil {
		return err
	}
	if inactivity > 0 && sw.Service != nil {
		erased, err := sw.expireInactive(ctx, id, now, inactivity, rep)
		if err != nil || erased {
			return err
		}
	}
	if shortest <= 0 || sum.FirstEventAt.IsZero() || !sum.FirstEventAt.Before(now.Add(-shortest)) {
		return nil
	}
	// Candidates: the events older than the shortest period, a page at
	// a time; each is checked against its own rule.
	q := kith.TimelineQuery{End: now.Add(-shortest), Limit: 1000}
	for {
		entries, err := sw.Store.Timeline(ctx, id, q)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		seqs := make([]int64, len(entries))
		for i, e := range entries {
			seqs[i] = e.Seq
		}
		msgs, err := sw.Store.EventsBySeq(ctx, seqs)
		if err != nil {
			return err
		}
		var expired []int64
		rules := map[string]int64{}
		for _, m := range msgs {
			keep, rule := sw.Policy.keep(m, names[m.SourceID])
			if keep > 0 && m.EventTime().Before(now.Add(-keep)) {
				expired = append(expired, m.Seq)
				rules[rule]++
			}
		}
		n, err := sw.Store.ExpireEvents(ctx, sum.Members, expired)
		if err != nil {
			return err
		}
		rep.EventsDeleted += n
		for r, k := range rules {
			rep.EventsByRule[r] += k
		}
		if len(entries) < q.Limit {
			return nil
		}
		last := entries[len(entries)-1]
		q.Before = &kith.TimelineCursor{Timestamp: last.Timestamp, Seq: last.Seq}
	}
}

// lastSeen is when any identifier of the profile was last seen: the
// profile's last activity, which expiring its old events does not change.
func (sw *Sweeper) lastSeen(ctx context.Context, id string) (time.Time, error) {
	ids, err := sw.Store.Identities(ctx, id)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, i := range ids {
		if i.LastSeen.After(last) {
			last = i.LastSeen
		}
	}
	return last, nil
}

// expireInactive erases the profile if none of its identifiers was seen
// within the inactivity period.
func (sw *Sweeper) expireInactive(ctx context.Context, id string, now time.Time, inactivity time.Duration, rep *SweepReport) (bool, error) {
	last, err := sw.lastSeen(ctx, id)
	if err != nil || last.IsZero() || !last.Before(now.Add(-inactivity)) {
		return false, err
	}
	counts := map[string]int64{}
	err = sw.Service.EraseProfile(ctx, id, counts)
	if kith.ErrorCode(err) == kith.ECONFLICT {
		return false, nil // merged into another profile meanwhile: not this sweep's to judge
	}
	if err != nil {
		return false, err
	}
	rep.ProfilesErased++
	rep.EventsDeleted += counts["events"]
	rep.EventsByRule["profile_inactivity"] += counts["events"]
	return true, nil
}
