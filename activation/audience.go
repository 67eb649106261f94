package activation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/kithcdp/kith"
)

// The events audience changes are sent as (kith.AudienceAsTrack).
const (
	EventAudienceEntered = "Audience Entered"
	EventAudienceExited  = "Audience Exited"
)

// sync sends the next page of the members an audience had when the
// destination subscribed (its first sync: every member as an entry, as
// Segment's first audience sync does), and moves the sync position past
// those it handled: to the next audience at the end of one, to 0 (done)
// after the last. The change stream waits meanwhile, so that no change
// read before a member's entry is sent after it; changes from the moment
// the destination subscribed follow, so a member who entered meanwhile
// may be announced twice (at least once), never missed. more says a
// page is left.
func (w *worker) sync(ctx context.Context, st *step) (more bool, err error) {
	p := &st.u.Progress
	if p.Sync > len(w.d.Audiences) {
		p.Sync, p.SyncAfter = 0, ""
		return false, nil
	}
	audience := w.d.Audiences[p.Sync-1]
	limit := w.e.cfg.BatchSize
	ms, err := w.e.store.Members(ctx, audience, p.SyncAfter, limit)
	if kith.ErrorCode(err) == kith.EINVALID && p.SyncAfter != "" {
		// The member it stopped after is gone from the member list (it
		// left every audience, or was erased): start the audience again
		// (its members are sent at least once).
		w.e.log.Warn("activation: the first sync's position is gone; the audience's members are sent again", "destination", w.d.Name, "audience", audience)
		p.SyncAfter = ""
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("destination %s: reading the members of %s: %w", w.d.Name, audience, err)
	}
	allowed := w.consent()
	people := map[string]person{}
	now := w.e.now().UTC()
	items := make([]item, 0, len(ms))
	for i, m := range ms {
		it := item{seq: int64(i)}
		ch := kith.MembershipChange{Audience: audience, ProfileID: m.ProfileID, Entered: true, At: now}
		d, reason, err := w.audienceDelivery(ctx, allowed, people, ch, fmt.Sprintf("dlv_%s_s%d_%s", w.d.ID, p.Sync, shortID(m.ProfileID)))
		if err != nil {
			return false, err
		}
		it.d, it.reason = d, reason
		items = append(items, it)
	}
	handled, err := w.deliver(ctx, st, items)
	if err != nil {
		return false, err
	}
	switch {
	case handled < len(ms):
		if handled > 0 {
			p.SyncAfter = ms[handled-1].ProfileID
		}
		return false, nil
	case len(ms) == limit:
		p.SyncAfter = ms[len(ms)-1].ProfileID
		return true, nil
	}
	p.Sync, p.SyncAfter = p.Sync+1, ""
	if p.Sync > len(w.d.Audiences) {
		p.Sync = 0
	}
	return true, nil
}

// changes reads the next audience membership changes and decides each:
// skipped (an audience the destination does not subscribe to: not
// counted, since it never asked for it), filtered, or a message about the
// profile.
func (w *worker) changes(ctx context.Context) (read, error) {
	from := w.progress.ChangeSeq
	limit := w.e.cfg.BatchSize
	chs, err := w.e.store.MembershipChanges(ctx, from, "", "", limit)
	if err != nil {
		return read{}, fmt.Errorf("destination %s: reading audience changes after %d: %w", w.d.Name, from, err)
	}
	if len(chs) == 0 {
		return read{upTo: from}, nil
	}
	rd := read{upTo: chs[len(chs)-1].Seq, full: len(chs) == limit}
	allowed := w.consent()
	people := map[string]person{}
	for _, ch := range chs {
		it := item{seq: ch.Seq}
		if !slices.Contains(w.d.Audiences, ch.Audience) {
			rd.items = append(rd.items, it)
			continue
		}
		d, reason, err := w.audienceDelivery(ctx, allowed, people, ch, deliveryID(w.d.ID, 'c', ch.Seq))
		if err != nil {
			return read{}, err
		}
		it.d, it.reason = d, reason
		rd.items = append(rd.items, it)
	}
	return rd, nil
}

// profileMessage decides one message about a profile (an audience
// entry or exit, a trait change): the delivery, keyed by the canonical
// profile so that it keeps its place among the profile's messages, with
// the body build makes for the person as a receiver knows them and the
// destination's mapping applied; or why it is filtered (the profile is
// gone, or has not granted the destination's consent). people caches the
// persons read in one step.
func (w *worker) profileMessage(ctx context.Context, allowed func(context.Context, string) (bool, error), people map[string]person,
	profileID, id, kind string, build func(person) ([]byte, error)) (*kith.Delivery, string, error) {
	canonical, err := w.e.store.Canonical(ctx, profileID)
	if kith.ErrorCode(err) == kith.ENOTFOUND {
		return nil, FilteredNoProfile, nil
	} else if err != nil {
		return nil, "", fmt.Errorf("destination %s: resolving profile %s: %w", w.d.Name, profileID, err)
	}
	ok, err := allowed(ctx, canonical)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, FilteredConsent, nil
	}
	p, seen := people[canonical]
	if !seen {
		if p, err = w.person(ctx, canonical); err != nil {
			return nil, "", err
		}
		people[canonical] = p
	}
	body, err := build(p)
	if err == nil {
		body, err = w.mapped(ctx, body, canonical)
	}
	if err != nil {
		return nil, "", fmt.Errorf("destination %s: message %s: %w", w.d.Name, id, err)
	}
	return &kith.Delivery{ID: id, Destination: w.d.ID, Key: canonical, Kind: kind, Body: body}, "", nil
}

// audienceDelivery decides one entry or exit (profileMessage).
func (w *worker) audienceDelivery(ctx context.Context, allowed func(context.Context, string) (bool, error), people map[string]person,
	ch kith.MembershipChange, id string) (*kith.Delivery, string, error) {
	return w.profileMessage(ctx, allowed, people, ch.ProfileID, id, kindAudience, func(p person) ([]byte, error) {
		return audienceMessage(w.d.AudienceAs, id, ch, p)
	})
}

// timeFormat is how collect writes the times of stored messages, so the
// messages Kith makes look like those it forwards.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// person is who an audience message is about, as a receiver knows them.
type person struct {
	profile     string
	userID      string
	anonymousID string
	email       string
}

// person reads a profile's latest user id, anonymous id and e-mail.
func (w *worker) person(ctx context.Context, canonical string) (person, error) {
	ids, err := w.e.store.Identities(ctx, canonical)
	if err != nil {
		return person{}, fmt.Errorf("destination %s: reading the identifiers of %s: %w", w.d.Name, canonical, err)
	}
	p := person{profile: canonical}
	latest := map[string]time.Time{}
	for _, id := range ids {
		var field *string
		switch id.Type {
		case kith.IdentUserID:
			field = &p.userID
		case kith.IdentAnonymousID:
			field = &p.anonymousID
		case kith.IdentEmail:
			field = &p.email
		default:
			continue
		}
		if t, ok := latest[id.Type]; !ok || id.LastSeen.After(t) {
			*field, latest[id.Type] = id.Value, id.LastSeen
		}
	}
	if p.userID == "" && p.anonymousID == "" {
		// A Segment message needs one of them; the profile id names the
		// person without saying anything about them.
		p.anonymousID = canonical
	}
	return p, nil
}

// audienceMessage is the Segment message for one entry or exit: a track
// "Audience Entered"/"Audience Exited" with properties.audience_key, or
// (AudienceAsIdentify) an identify with the trait <audience_key>:
// true|false, as Segment's audience syncs send them.
func audienceMessage(as, id string, ch kith.MembershipChange, p person) ([]byte, error) {
	type message struct {
		Type        string         `json:"type"`
		MessageID   string         `json:"messageId"`
		Event       string         `json:"event,omitempty"`
		UserID      string         `json:"userId,omitempty"`
		AnonymousID string         `json:"anonymousId,omitempty"`
		Properties  map[string]any `json:"properties,omitempty"`
		Traits      map[string]any `json:"traits,omitempty"`
		Context     map[string]any `json:"context,omitempty"`
		Timestamp   string         `json:"timestamp"`
	}
	m := message{MessageID: id, UserID: p.userID, AnonymousID: p.anonymousID, Timestamp: ch.At.UTC().Format(timeFormat)}
	if as == kith.AudienceAsIdentify {
		m.Type = "identify"
		m.Traits = map[string]any{ch.Audience: ch.Entered}
		if p.email != "" {
			m.Traits["email"] = p.email
		}
	} else {
		m.Type, m.Event = "track", EventAudienceExited
		if ch.Entered {
			m.Event = EventAudienceEntered
		}
		m.Properties = map[string]any{"audience_key": ch.Audience}
		if p.email != "" {
			m.Context = map[string]any{"traits": map[string]any{"email": p.email}}
		}
	}
	return json.Marshal(m)
}
