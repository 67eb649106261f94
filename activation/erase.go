package activation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kithcdp/kith"
)

// kindDelete is the kind of the deletion messages an erasure sends.
const kindDelete = "delete"

// Forget removes what every destination holds about erased profiles (by
// id, every member of the person's unified profile, whose canonical id
// is canonical): their retrying and dead-lettered deliveries, counted as
// filtered (kith.DeliveriesErased), and the record that a destination
// received them. For an erasure request (erasure names it; empty for a
// retention expiry, which is Kith's own policy rather than the person's
// request) each destination that received data about any of them is
// sent a deletion message about the person, whose identifiers give the
// userId and anonymousIds a receiver knows them by. It returns those
// destinations, each with its deletion pending.
//
// Every worker is stopped first, so that none is holding the person's
// messages in memory: a step a worker abandons is not recorded, and if
// it had already sent a message about the person, that destination
// counts as having received them. The workers stay stopped until release
// is called (always call it, also after an error): the caller erases the
// person's events meanwhile, so that no worker reads them again. Forget
// may be called again before release (for members found later). A
// retention expiry about profiles no destination received stops nothing.
func (e *Engine) Forget(ctx context.Context, erasure, canonical string, profiles []string, person []kith.Identity) (eds []kith.ErasureDestination, release func(), err error) {
	release = func() {}
	if len(profiles) == 0 {
		return nil, release, nil
	}
	received := map[string]bool{}
	ids, err := e.store.ReceivedBy(ctx, profiles)
	if err != nil {
		return nil, release, fmt.Errorf("activation: destinations that received the erased profiles: %w", err)
	}
	for _, id := range ids {
		received[id] = true
	}
	// Pages of the log in memory may hold the erased events.
	e.pages.clear()
	if erasure == "" && len(ids) == 0 {
		return nil, release, nil // nothing sent about them: nothing held
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, release, fmt.Errorf("activation: the engine is closed")
	}
	members := make(map[string]bool, len(profiles))
	for _, p := range profiles {
		members[p] = true
	}
	e.holdLocked()
	release = sync.OnceFunc(e.releaseHold)
	// Attributions from before the erasure may name the person's
	// profiles; the workers attribute afresh.
	e.owners.clear()
	e.pages.clear()
	for id, w := range e.workers {
		w.stop()
		delete(e.workers, id)
		e.keepUnrecorded(id, w)
	}
	for id, keys := range e.unrecorded {
		for key := range keys {
			if members[key] {
				received[id] = true
			}
		}
	}
	ds, err := e.store.Destinations(ctx)
	if err != nil {
		return nil, release, fmt.Errorf("activation: reading the destinations: %w", err)
	}
	now := e.now().UTC()
	for _, d := range ds {
		p, err := e.store.DestinationProgress(ctx, d.ID)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue
		} else if err != nil {
			return eds, release, fmt.Errorf("activation: destination %s: %w", d.Name, err)
		}
		u := kith.DestinationUpdate{Progress: p, Forget: profiles}
		if members[p.SyncAfter] {
			// Its first sync stopped after an erased member, whom the
			// member list no longer has: it starts that audience again.
			u.Progress.SyncAfter = ""
		}
		var sent kith.ErasureDestination
		if erasure != "" && received[d.ID] {
			u.Put, err = deletions(d.ID, erasure, canonical, person, now)
			if err != nil {
				return eds, release, fmt.Errorf("activation: destination %s: %w", d.Name, err)
			}
			sent = kith.ErasureDestination{ID: d.ID, Name: d.Name, Status: kith.DeletionPending}
			for _, del := range u.Put {
				sent.Deliveries = append(sent.Deliveries, del.ID)
			}
		}
		if err := e.store.AdvanceDestination(ctx, d.ID, u); kith.ErrorCode(err) == kith.ENOTFOUND {
			continue
		} else if err != nil {
			return eds, release, fmt.Errorf("activation: destination %s: forgetting erased profiles: %w", d.Name, err)
		}
		for p := range e.unrecorded[d.ID] {
			if members[p] {
				delete(e.unrecorded[d.ID], p)
			}
		}
		if sent.ID != "" {
			eds = append(eds, sent)
		}
	}
	return eds, release, nil
}

// holdLocked keeps workers from starting until releaseHold; e.mu is held.
func (e *Engine) holdLocked() { e.holds++ }

// releaseHold ends one hold; when none is left, the workers of the
// destinations that are not paused start again. If the destinations
// cannot be read, those that were running start with the settings they
// had, and the failure is logged: delivery does not stop silently.
func (e *Engine) releaseHold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.holds--
	if e.holds > 0 || e.closed {
		return
	}
	ds, err := e.store.Destinations(e.ctx)
	if err != nil {
		e.log.Error("activation: reading the destinations after an erasure; the stopped workers start with their settings", "err", err)
		ds = e.held
	}
	e.held = nil
	for _, d := range ds {
		if _, running := e.workers[d.ID]; !d.Paused && !running {
			e.start(d)
		}
	}
}

// keepUnrecorded keeps what a stopped worker had sent without recording
// it, for the destination's next worker and for Forget; e.mu is held.
func (e *Engine) keepUnrecorded(id string, w *worker) {
	if e.holds > 0 {
		e.held = append(e.held, w.d)
	}
	if len(w.unrecorded) == 0 {
		return
	}
	if e.unrecorded[id] == nil {
		e.unrecorded[id] = map[string]bool{}
	}
	for k := range w.unrecorded {
		e.unrecorded[id][k] = true
	}
}

// deletions are the deletion messages one destination is sent about an
// erased person: one naming the userId (and the latest anonymousId), and
// one for each other anonymousId, so that a receiver keyed by either
// finds every record. A person known by neither (only by e-mail, say) was
// sent as the profile id (see person), and is deleted as that. E-mail
// goes along in context.traits, as in audience messages. Ids are stable,
// so that an erasure run again does not send them twice; they name the
// canonical profile by a digest, so that a profile that came back and is
// erased too gets deletions of its own.
func deletions(dest, erasure, canonical string, ids []kith.Identity, now time.Time) ([]kith.Delivery, error) {
	var users, anons []kith.Identity
	email := ""
	var emailSeen time.Time
	for _, id := range ids {
		switch id.Type {
		case kith.IdentUserID:
			users = append(users, id)
		case kith.IdentAnonymousID:
			anons = append(anons, id)
		case kith.IdentEmail:
			if email == "" || id.LastSeen.After(emailSeen) {
				email, emailSeen = id.Value, id.LastSeen
			}
		}
	}
	latestFirst := func(a, b kith.Identity) int { return b.LastSeen.Compare(a.LastSeen) }
	slices.SortStableFunc(users, latestFirst)
	slices.SortStableFunc(anons, latestFirst)
	type pair struct{ user, anon string }
	var msgs []pair
	for i, u := range users {
		p := pair{user: u.Value}
		if i == 0 && len(anons) > 0 {
			p.anon, anons = anons[0].Value, anons[1:]
		}
		msgs = append(msgs, p)
	}
	for _, a := range anons {
		msgs = append(msgs, pair{anon: a.Value})
	}
	if len(msgs) == 0 {
		msgs = append(msgs, pair{anon: canonical})
	}
	out := make([]kith.Delivery, 0, len(msgs))
	for i, m := range msgs {
		id := "dlv_" + dest + "_x" + erasure + "_" + shortID(canonical) + "_" + strconv.Itoa(i)
		body, err := deleteMessage(id, m.user, m.anon, email, now)
		if err != nil {
			return nil, err
		}
		out = append(out, kith.Delivery{ID: id, Destination: dest, Key: "erasure:" + erasure, Seq: int64(i),
			Kind: kindDelete, Body: body, FirstAt: now, NextAt: now})
	}
	return out, nil
}

// deleteMessage is a Segment-shape deletion message.
func deleteMessage(id, userID, anonymousID, email string, at time.Time) ([]byte, error) {
	m := struct {
		Type        string         `json:"type"`
		MessageID   string         `json:"messageId"`
		UserID      string         `json:"userId,omitempty"`
		AnonymousID string         `json:"anonymousId,omitempty"`
		Context     map[string]any `json:"context,omitempty"`
		Timestamp   string         `json:"timestamp"`
	}{Type: "delete", MessageID: id, UserID: userID, AnonymousID: anonymousID, Timestamp: at.Format(timeFormat)}
	if email != "" {
		m.Context = map[string]any{"traits": map[string]any{"email": email}}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("deletion message: %w", err)
	}
	return b, nil
}

// DeletionStatus reads how the deletion messages of an erasure are doing
// at each destination: sent once none of its deliveries waits any more,
// failed when one is dead-lettered (with its last error; a replay sends
// it again), pending while one waits for an attempt, dropped when the
// destination was deleted first.
func (e *Engine) DeletionStatus(ctx context.Context, eds []kith.ErasureDestination) ([]kith.ErasureDestination, error) {
	if len(eds) == 0 {
		return eds, nil
	}
	ds, err := e.store.Destinations(ctx)
	if err != nil {
		return nil, fmt.Errorf("activation: reading the destinations: %w", err)
	}
	exists := map[string]bool{}
	for _, d := range ds {
		exists[d.ID] = true
	}
	out := slices.Clone(eds)
	for i := range out {
		ed := &out[i]
		ed.Status, ed.Attempts, ed.Error = kith.DeletionSent, 0, ""
		if !exists[ed.ID] {
			ed.Status = kith.DeletionDropped
			continue
		}
		for _, id := range ed.Deliveries {
			dl, err := e.store.Delivery(ctx, ed.ID, id)
			if kith.ErrorCode(err) == kith.ENOTFOUND {
				continue // delivered
			} else if err != nil {
				return nil, fmt.Errorf("activation: destination %s: %w", ed.Name, err)
			}
			ed.Attempts = max(ed.Attempts, dl.Attempts)
			if dl.LastError != "" {
				ed.Error = dl.LastError
			}
			switch {
			case dl.Dead:
				ed.Status = kith.DeletionFailed
			case ed.Status != kith.DeletionFailed:
				ed.Status = kith.DeletionPending
			}
		}
	}
	return out, nil
}

// shortID is a digest of a profile id for delivery ids: stable, and
// telling a receiver nothing about Kith's ids.
func shortID(profile string) string {
	h := sha256.Sum256([]byte(profile))
	return hex.EncodeToString(h[:6])
}
