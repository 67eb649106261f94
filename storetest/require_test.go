package storetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A test that needs PostgreSQL skips without it on a developer's machine
// and fails without it under CI: a suite cannot pass in CI by skipping.
func TestPostgresURLUnderCI(t *testing.T) {
	if os.Getenv("KITH_REQUIRE_HELPER") != "" {
		PostgresURL(t)
		return
	}
	for _, tc := range []struct {
		ci       string
		fails    bool
		saysWhat string
	}{
		{ci: "", fails: false, saysWhat: "--- SKIP"},
		{ci: "true", fails: true, saysWhat: "CI must provide it"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresURLUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "KITH_REQUIRE_HELPER=1", PostgresEnv+"=", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.saysWhat) {
			t.Errorf("CI=%q: err %v, want failure %v, output saying %q:\n%s", tc.ci, err, tc.fails, tc.saysWhat, out)
		}
	}
}
