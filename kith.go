// Package kith holds Kith's domain: the types every layer shares, the
// storage interface the embedded and PostgreSQL stores implement, and the
// error type that the HTTP layer turns into stable machine-readable codes.
// Its files follow the concepts:
//
//   - message.go: accepted events, the event log and its accounting;
//   - access.go: sources, tokens and scopes;
//   - identity.go: identifiers, merges, splits, links and identity decisions;
//   - profile.go: traits, timelines and profile reads;
//   - orders.go and insight.go: orders and predicted traits;
//   - audience.go: audience and computed-trait definitions and memberships;
//   - dmp.go, audit.go, privacy.go: third-party audiences, the audit trail,
//     consent and erasure;
//   - store.go: the Store every backend implements;
//   - error.go, text.go, health.go: errors, the storable-text rule and
//     worker health.
//
// Adapters live in packages named for their technology (sqlite, postgres,
// httpapi); the engine that turns the event log into profiles lives in
// pipeline; the Segment wire protocol is parsed in collect. They talk to each
// other only through the types declared here.
package kith
