package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// npmOnce installs the Node SDKs once per test binary, however many tests
// need them.
var (
	npmOnce sync.Once
	npmErr  error
	npmOut  []byte
)

// nodeDir is the directory of package.json, package-lock.json and send.mjs.
const nodeDir = "node"

// requireNode fails the test (never skips it: CI must install Node.js) when
// node or npm is missing, and runs npm ci when node_modules is missing.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: the Node SDK tests need Node.js 20+ and npm (CI must install them): %v", err)
	}
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules")); err == nil {
			return
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			npmErr = err
			return
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = nodeDir
		npmOut, npmErr = cmd.CombinedOutput()
	})
	if npmErr != nil {
		t.Fatalf("npm ci in e2e/node failed (the Node SDK tests need npm and the npm registry): %v\n%s", npmErr, npmOut)
	}
	return node
}

// nodeResult is what send.mjs prints on stdout.
type nodeResult struct {
	SDK         string        `json:"sdk"`
	AnonymousID string        `json:"anonymousId"`
	UserID      string        `json:"userId"`
	RawEmail    string        `json:"rawEmail"`
	Name        string        `json:"name"`
	Plan        string        `json:"plan"`
	Messages    []sentMessage `json:"messages"`
}

// runNodeSDK runs send.mjs for one SDK against the server and returns the
// messages it reports sent, after checking that it used the visitor the Go
// side derives from the same run id.
func runNodeSDK(t *testing.T, node string, s *server, src source, sdk, runID string, v visitor) []sentMessage {
	t.Helper()
	cmd := exec.Command(node, "send.mjs")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(),
		"KITH_URL="+s.URL, "KITH_WRITE_KEY="+src.WriteKey, "KITH_SDK="+sdk, "KITH_RUN_ID="+runID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node send.mjs: %v", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node send.mjs %s: %v\nstdout:\n%s\nstderr:\n%s", sdk, err, stdout.Bytes(), stderr.Bytes())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("node send.mjs %s did not finish within 60s\nstderr:\n%s", sdk, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("node send.mjs %s stderr:\n%s", sdk, stderr.Bytes())
	}
	var res nodeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("node send.mjs %s: decoding stdout %q: %v", sdk, stdout.Bytes(), err)
	}
	if res.AnonymousID != v.AnonymousID || res.UserID != v.UserID || res.RawEmail != v.RawEmail ||
		res.Name != v.Name || res.Plan != v.Plan {
		t.Fatalf("send.mjs and newVisitor disagree: script used %+v, Go expects %+v", res, v)
	}
	if len(res.Messages) != visitorMessages {
		t.Fatalf("node send.mjs %s: want %d messages, got %+v", sdk, visitorMessages, res.Messages)
	}
	return res.Messages
}

// TestNodeSDKs sends the visitor journey with the unmodified Node.js SDKs
// (@segment/analytics-node, which sends the write key both as Basic auth and
// in the body, and @rudderstack/rudder-sdk-node, which gzips) and reads the
// unified profile back.
func TestNodeSDKs(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	s := startServer(t, serverOptions{})
	for _, sdk := range []string{"segment", "rudderstack"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			src := s.createSource(t, "node-"+sdk)
			runID := randomHex(4)
			v := newVisitor(sdk, runID)
			start := time.Now()
			sent := runNodeSDK(t, node, s, src, sdk, runID, v)
			checkVisitorProfile(t, s, src, v, sent, start)
		})
	}
}
