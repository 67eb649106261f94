package activation

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/rawjson"
)

// segmentConfig is the segment type's config.
type segmentConfig struct {
	Endpoint string `json:"endpoint" kith:"required,url" doc:"The receiver's base URL (https://api.segment.io, a RudderStack data plane, another Kith): batches are POSTed to {endpoint}/v1/batch. A password in it and the values of its query are secret."`
	WriteKey string `json:"writeKey" kith:"required,secret" doc:"The receiver's write key, sent as the Basic auth user name with an empty password."`
	Timeout  string `json:"timeout" doc:"How long one attempt may take, as a Go duration (default 10s, at most 1m)."`
	Batch    int    `json:"batch" doc:"Messages per request (default 100); a request also stays under Segment's 500 KB."`

	url     string
	auth    string
	timeout time.Duration
	batch   int
}

// segmentDefaultBatch is the batch size when none is configured.
const segmentDefaultBatch = 100

// segmentMaxBytes keeps a batch under Segment's 500 KB per request, with
// room for the envelope and for what forwarding changes in each message.
const segmentMaxBytes = 450_000

func (c *segmentConfig) validate() error {
	u, err := checkURL("config.endpoint", c.Endpoint)
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return invalid("config.endpoint", "must be a base URL without a query (/v1/batch is added)")
	}
	c.url = strings.TrimSuffix(u.String(), "/") + "/v1/batch"
	if strings.ContainsAny(c.WriteKey, "\r\n\x00") {
		return invalid("config.writeKey", "must not contain line breaks")
	}
	c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.WriteKey+":"))
	if c.timeout, err = checkTimeout("config.timeout", c.Timeout); err != nil {
		return err
	}
	if c.Batch == 0 {
		c.batch = segmentDefaultBatch
		return nil
	}
	c.batch, err = checkBatch("config.batch", c.Batch)
	return err
}

func init() {
	register(kith.DestinationSegment,
		"Forwards in the Segment HTTP Tracking API format (POST {endpoint}/v1/batch, Basic auth with the write key, gzip) to any compatible receiver: Segment, RudderStack, Jitsu, another Kith.",
		&segmentConfig{}, newSegment)
}

// segment forwards batches in the Segment HTTP Tracking API format.
type segment struct {
	cfg *segmentConfig
	out *outbound
}

func newSegment(c config, t transport) (Sender, error) {
	cfg := c.(*segmentConfig)
	return &segment{cfg: cfg, out: newOutbound(cfg.timeout, t)}, nil
}

func (s *segment) Limits() Limits { return Limits{Messages: s.cfg.batch, Bytes: segmentMaxBytes} }

// Send POSTs {"batch":[…]} gzipped, each message made forwardable.
func (s *segment) Send(ctx context.Context, id string, msgs []Message) Result {
	fwd := make([]Message, len(msgs))
	for i, m := range msgs {
		b, err := forwardable(m.Body)
		if err != nil {
			return Result{Err: fmt.Errorf("message %s: %w", m.ID, err)}
		}
		fwd[i] = Message{ID: m.ID, Body: b}
	}
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	if _, err := zw.Write(batchBody(fwd)); err != nil {
		return Result{Err: fmt.Errorf("compressing: %w", err)}
	}
	if err := zw.Close(); err != nil {
		return Result{Err: fmt.Errorf("compressing: %w", err)}
	}
	req, err := http.NewRequest(http.MethodPost, s.cfg.url, bytes.NewReader(body.Bytes()))
	if err != nil {
		return Result{Err: fmt.Errorf("building the request: %w", err)}
	}
	req.Header.Set("Authorization", s.cfg.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("User-Agent", userAgent)
	return s.out.do(ctx, req)
}

// forwardable prepares a stored message for another Segment receiver.
// Its timestamp is already corrected for the sender's clock skew; a
// receiver that corrects again (timestamp = receivedAt − (sentAt −
// originalTimestamp)) would move it to the time of forwarding. So the
// corrected time becomes the originalTimestamp and sentAt goes: the
// receiver then keeps the time as it is.
func forwardable(body []byte) ([]byte, error) {
	fields, err := rawjson.Object(body)
	if err != nil || fields == nil {
		return nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	delete(fields, "sentAt")
	if ts, ok := fields["timestamp"]; ok {
		fields["originalTimestamp"] = ts
	}
	return rawjson.AppendObject(make([]byte, 0, len(body)+16), fields), nil
}
