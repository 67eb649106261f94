// Package activation delivers Kith's data to destinations — isolated per
// destination, retried, consent-gated, accounted for.
//
// A destination's type is a small plugin (a Type: its config declared as a
// struct whose tags say what each field is, validated from that
// declaration, and a Sender that turns messages into one HTTP request).
// What is common to every type lives here once, around any sender: the
// outbound HTTP safety rules (http and https only, TLS verified, no
// redirect to another host, response bodies read up to a cap), batching,
// the classification of an attempt's outcome and the retry policy
// (Policy), the rate limit, and the Engine.
//
// The Engine runs one worker goroutine per destination, so a destination
// that is down, slow or hangs delays only itself. A worker reads the event
// log after its position (never past the indexer's cursor, so every event
// is attributed to the profile it was applied to), selects events by the
// destination's filter, checks consent with privacy.Allowed, and sends.
// A message that fails becomes a Delivery that waits for its retry, and
// later messages of the same profile wait behind it: one failing profile
// delays only that profile. After each batch the worker records its
// position, the deliveries it added or changed and those that finished,
// and its counters in one DestinationStore.AdvanceDestination, so a crash
// re-sends at most the last batch, with the same delivery ids.
//
// The log is the queue: when a destination fails request after request,
// its worker stops reading new events (they stay in the log, and the
// destination's position says how far behind it is) and only retries what
// already failed, until one attempt goes through.
package activation
