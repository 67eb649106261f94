package storetest

import (
	"os"
	"testing"
)

// PostgresEnv names the environment variable that holds the URL of a
// PostgreSQL server the tests may use: its user may create databases and
// schemas, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const PostgresEnv = "KITH_TEST_POSTGRES_URL"

// Unavailable ends a test that needs something this machine lacks (a
// PostgreSQL server, a browser, root). On a developer's machine it skips
// the test; under CI (the CI variable is set, as .ci/run and every hosted
// CI set it) it fails the test instead, so that a suite cannot pass by
// skipping what CI promised to provide.
func Unavailable(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s; CI must provide it", what)
	}
	tb.Skip(what)
}

// PostgresURL returns the PostgreSQL URL from PostgresEnv, or ends the
// test with Unavailable when it is not set.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		Unavailable(tb, PostgresEnv+" is not set; set it to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) to run this test")
	}
	return u
}
