package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith/storetest"
	rudder "github.com/rudderlabs/analytics-go/v4"
	segment "github.com/segmentio/analytics-go/v3"
)

// sdkRecorder collects what a Go SDK reports through its callback and
// logger interfaces: the messages the server acknowledged, the ones the
// SDK gave up on, and its log lines.
type sdkRecorder struct {
	mu       sync.Mutex
	sent     []sentMessage
	failures []string
	log      syncBuffer
}

// success records an acknowledged message. Both SDKs serialise their
// message structs with the wire names, so JSON recovers the messageId,
// type and event the SDK filled in.
func (r *sdkRecorder) success(msg any) {
	var m sentMessage
	b, err := json.Marshal(msg)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || m.MessageID == "" {
		r.failures = append(r.failures, fmt.Sprintf("acknowledged message without a readable messageId: %v %s", err, b))
		return
	}
	r.sent = append(r.sent, m)
}

// failure records a message the SDK dropped.
func (r *sdkRecorder) failure(msg any, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, fmt.Sprintf("%T dropped: %v", msg, err))
}

// Logf implements the SDKs' Logger interface.
func (r *sdkRecorder) Logf(format string, args ...any) {
	fmt.Fprintf(&r.log, "INFO: "+format+"\n", args...)
}

// Errorf implements the SDKs' Logger interface.
func (r *sdkRecorder) Errorf(format string, args ...any) {
	fmt.Fprintf(&r.log, "ERROR: "+format+"\n", args...)
}

// result returns the acknowledged messages after the client was closed,
// failing the test if any message was dropped or the count is not want.
func (r *sdkRecorder) result(t *testing.T, sdk string, want int) []sentMessage {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 || len(r.sent) != want {
		t.Fatalf("%s: want %d acknowledged messages, got %d; failures %v; SDK log:\n%s",
			sdk, want, len(r.sent), r.failures, r.log.String())
	}
	return append([]sentMessage(nil), r.sent...)
}

// segmentCallback adapts sdkRecorder to segment.Callback.
type segmentCallback struct{ r *sdkRecorder }

// Success implements segment.Callback.
func (c segmentCallback) Success(m segment.Message) { c.r.success(m) }

// Failure implements segment.Callback.
func (c segmentCallback) Failure(m segment.Message, err error) { c.r.failure(m, err) }

// rudderCallback adapts sdkRecorder to rudder.Callback.
type rudderCallback struct{ r *sdkRecorder }

// Success implements rudder.Callback.
func (c rudderCallback) Success(m rudder.Message) { c.r.success(m) }

// Failure implements rudder.Callback.
func (c rudderCallback) Failure(m rudder.Message, err error) { c.r.failure(m, err) }

// visitorMessages is how many messages each SDK scenario sends.
const visitorMessages = 6

// sendSegmentGo sends the visitor's journey with the unmodified Segment Go
// SDK: a page view and a product view while anonymous, the sign-up
// identify (e-mail with odd case and padding), the alias from anonymous id
// to user id, an order and a page view as the user. A batch size of two
// makes the SDK send three concurrent batches, so they may arrive in any
// order. Close flushes; the acknowledged messages are returned.
func sendSegmentGo(t *testing.T, s *server, src source, v visitor) []sentMessage {
	t.Helper()
	rec := &sdkRecorder{}
	c, err := segment.NewWithConfig(src.WriteKey, segment.Config{
		Endpoint:  s.URL,
		BatchSize: 2,
		Interval:  100 * time.Millisecond,
		Callback:  segmentCallback{rec},
		Logger:    rec,
	})
	if err != nil {
		t.Fatalf("segment.NewWithConfig: %v", err)
	}
	msgs := []segment.Message{
		segment.Page{AnonymousId: v.AnonymousID, Name: "Home",
			Properties: segment.NewProperties().SetPath("/").SetTitle("Home")},
		segment.Track{AnonymousId: v.AnonymousID, Event: "Product Viewed",
			Properties: segment.NewProperties().Set("product_id", "p-1").SetPrice(19.99)},
		segment.Identify{AnonymousId: v.AnonymousID, UserId: v.UserID,
			Traits: segment.NewTraits().SetEmail(v.RawEmail).SetName(v.Name).Set("plan", v.Plan)},
		segment.Alias{PreviousId: v.AnonymousID, UserId: v.UserID},
		segment.Track{UserId: v.UserID, Event: "Order Completed",
			Properties: segment.NewProperties().SetOrderId("o-1").SetRevenue(19.99).SetCurrency("EUR")},
		segment.Page{UserId: v.UserID, Name: "Account",
			Properties: segment.NewProperties().SetPath("/account")},
	}
	for _, m := range msgs {
		if err := c.Enqueue(m); err != nil {
			t.Fatalf("segment Enqueue(%T): %v", m, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("segment Close: %v", err)
	}
	return rec.result(t, "segment analytics-go", len(msgs))
}

// sendRudderGo sends the same journey with the unmodified RudderStack Go
// SDK (gzip on, as by default). NoProxySupport stops it from calling
// /cluster-info. Track and page calls carry the anonymous id even after
// sign-up, because the SDK invents a random one for calls without it.
func sendRudderGo(t *testing.T, s *server, src source, v visitor) []sentMessage {
	t.Helper()
	rec := &sdkRecorder{}
	c, err := rudder.NewWithConfig(src.WriteKey, rudder.Config{
		DataPlaneUrl:   s.URL,
		NoProxySupport: true,
		BatchSize:      2,
		Interval:       100 * time.Millisecond,
		Callback:       rudderCallback{rec},
		Logger:         rec,
	})
	if err != nil {
		t.Fatalf("rudder.NewWithConfig: %v", err)
	}
	msgs := []rudder.Message{
		rudder.Page{AnonymousId: v.AnonymousID, Name: "Home",
			Properties: rudder.NewProperties().SetPath("/").SetTitle("Home")},
		rudder.Track{AnonymousId: v.AnonymousID, Event: "Product Viewed",
			Properties: rudder.NewProperties().Set("product_id", "p-1").SetPrice(19.99)},
		rudder.Identify{AnonymousId: v.AnonymousID, UserId: v.UserID,
			Traits: rudder.NewTraits().SetEmail(v.RawEmail).SetName(v.Name).Set("plan", v.Plan)},
		rudder.Alias{PreviousId: v.AnonymousID, UserId: v.UserID},
		rudder.Track{UserId: v.UserID, AnonymousId: v.AnonymousID, Event: "Order Completed",
			Properties: rudder.NewProperties().SetOrderId("o-1").SetRevenue(19.99).SetCurrency("EUR")},
		rudder.Page{UserId: v.UserID, AnonymousId: v.AnonymousID, Name: "Account",
			Properties: rudder.NewProperties().SetPath("/account")},
	}
	for _, m := range msgs {
		if err := c.Enqueue(m); err != nil {
			t.Fatalf("rudder Enqueue(%T): %v", m, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("rudder Close: %v", err)
	}
	return rec.result(t, "rudderstack analytics-go", len(msgs))
}

// runGoSDK creates a source, sends the visitor journey with one Go SDK and
// verifies the unified profile.
func runGoSDK(t *testing.T, s *server, sdk string, send func(*testing.T, *server, source, visitor) []sentMessage) {
	src := s.createSource(t, "webshop-"+sdk)
	v := newVisitor(sdk, randomHex(4))
	start := time.Now()
	sent := send(t, s, src, v)
	checkVisitorProfile(t, s, src, v, sent, start)
}

// TestGoSDKs sends an anonymous visitor's sign-up journey with the
// unmodified Segment and RudderStack Go SDKs, each through its own source
// of one server, and reads the unified profile back.
func TestGoSDKs(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	t.Run("segment", func(t *testing.T) {
		t.Parallel()
		runGoSDK(t, s, "segment-go", sendSegmentGo)
	})
	t.Run("rudderstack", func(t *testing.T) {
		t.Parallel()
		runGoSDK(t, s, "rudder-go", sendRudderGo)
	})
	t.Run("not_found", func(t *testing.T) {
		t.Parallel()
		checkNotFound(t, s, refPath("user_id:nobody-"+randomHex(4)))
		checkNotFound(t, s, refPath("email:nobody-"+randomHex(4)+"@example.com")+"/traits")
		checkNotFound(t, s, refPath("prf_"+randomHex(8))+"/events")
	})
}

// TestPostgres runs the Segment Go SDK scenario against a server on
// PostgreSQL, in a database created for the test and dropped afterwards.
// It runs only when KITH_TEST_POSTGRES_URL names a server whose user may
// create databases.
func TestPostgres(t *testing.T) {
	base := storetest.PostgresURL(t)
	t.Parallel()
	dbURL := createDatabase(t, base)
	s := startServer(t, serverOptions{Postgres: dbURL})
	t.Run("segment", func(t *testing.T) {
		runGoSDK(t, s, "segment-go", sendSegmentGo)
	})
	t.Run("restart", func(t *testing.T) {
		// The data outlives the process: after a restart, the profile
		// written before is still served.
		src := s.createSource(t, "pos")
		v := newVisitor("pg-restart", randomHex(4))
		s.mustSend(t, src.WriteKey, "/v1/identify", map[string]any{
			"userId": v.UserID, "traits": map[string]any{"email": v.RawEmail},
		})
		s.waitProcessed(t, 1, 30*time.Second)
		before := s.getProfile(t, "user_id:"+v.UserID)
		s.stop()
		s.restart()
		if after := s.getProfile(t, "email:"+v.Email); after.ID != before.ID {
			t.Errorf("after restart: email:%s resolves to %s, want %s", v.Email, after.ID, before.ID)
		}
	})
}

// createDatabase creates a scratch database dropped at cleanup.
func createDatabase(t *testing.T, base string) string {
	t.Helper()
	return storetest.CreateDatabase(t, strings.TrimSpace(base))
}
