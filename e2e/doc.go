// Package e2e holds Kith's end-to-end tests. They build the real kith
// binary once, start it as a user would (kith serve --data DIR --addr
// HOST:PORT, optionally on PostgreSQL), and drive it only through its HTTP
// interfaces: the Segment-compatible collection API, fed by the unmodified
// Segment and RudderStack SDKs for Go and Node.js, and the admin, stats and
// profile APIs, through which every result is read back.
//
// The tests prove the product's promises from the outside: traffic from
// real clients becomes one unified profile readable by every identifier,
// identities from different channels merge with recorded provenance, every
// received event is accounted for, and an acknowledged event survives a
// kill -9 exactly once.
//
// Requirements: Go, and Node.js 20+ with npm for the Node SDK tests (the
// test runs npm ci in e2e/node when node_modules is missing; it fails, not
// skips, when node is absent). Fetching github.com/rudderlabs/analytics-go
// needs GONOSUMDB=github.com/rudderlabs/analytics-go. Set
// KITH_TEST_POSTGRES_URL to a PostgreSQL URL whose user may create databases
// to also run the Go SDK scenario on PostgreSQL.
package e2e
