package activation

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kithcdp/kith"
)

// webhookConfig is the webhook type's config.
type webhookConfig struct {
	URL     string            `json:"url" kith:"required,url" doc:"The http or https URL each request is POSTed to. A password in it and the values of its query (often a token) are secret."`
	Secret  string            `json:"secret" kith:"required,secret" doc:"The signing secret: whsec_ and a base64 key (Standard Webhooks). NewWebhookSecret makes one."`
	Headers map[string]string `json:"headers" kith:"secret" doc:"Headers added to every request (an Authorization, say); their values are not shown again."`
	Timeout string            `json:"timeout" doc:"How long one attempt may take, as a Go duration (default 10s, at most 1m)."`
	Batch   int               `json:"batch" doc:"Messages per request, sent as {\"batch\":[…]} (0 or 1: one message per request, the message itself as the body)."`

	url     string
	key     []byte
	headers http.Header
	timeout time.Duration
	batch   int
}

// whsecPrefix starts a Standard Webhooks secret.
const whsecPrefix = "whsec_"

func (c *webhookConfig) validate() error {
	u, err := checkURL("config.url", c.URL)
	if err != nil {
		return err
	}
	c.url = u.String()
	b64, ok := strings.CutPrefix(c.Secret, whsecPrefix)
	if !ok {
		return invalid("config.secret", "must start with %s", whsecPrefix)
	}
	if c.key, err = base64.StdEncoding.DecodeString(b64); err != nil {
		return invalid("config.secret", "the part after %s must be base64", whsecPrefix)
	}
	if len(c.key) < 24 || len(c.key) > 64 {
		return invalid("config.secret", "the key must be 24 to 64 bytes (it is %d)", len(c.key))
	}
	if c.headers, err = checkHeaders("config.headers", c.Headers); err != nil {
		return err
	}
	if c.timeout, err = checkTimeout("config.timeout", c.Timeout); err != nil {
		return err
	}
	c.batch, err = checkBatch("config.batch", c.Batch)
	return err
}

// NewWebhookSecret returns a new signing secret for a webhook destination
// (whsec_ and 32 random bytes in base64), for the API to fill in when a
// destination is created without one.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24 on)
	return whsecPrefix + base64.StdEncoding.EncodeToString(b)
}

func init() {
	register(kith.DestinationWebhook,
		"POSTs each message as JSON (or {\"batch\":[…]}), signed per the Standard Webhooks specification: webhook-id (the same on every retry), webhook-timestamp, webhook-signature.",
		&webhookConfig{}, newWebhook)
}

// webhookMaxBytes caps a batched webhook body.
const webhookMaxBytes = 1 << 20

// webhook sends Standard Webhooks. Signing is the specification's own Go
// library (standard-webhooks/libraries, MIT, standard library only): the
// receivers' libraries verify what it signs.
type webhook struct {
	cfg    *webhookConfig
	signer *standardwebhooks.Webhook
	out    *outbound
	now    func() time.Time
}

func newWebhook(c config, t transport) (Sender, error) {
	cfg := c.(*webhookConfig)
	signer, err := standardwebhooks.NewWebhookRaw(cfg.key)
	if err != nil {
		return nil, fmt.Errorf("activation: webhook signer: %w", err)
	}
	return &webhook{cfg: cfg, signer: signer, out: newOutbound(cfg.timeout, t), now: time.Now}, nil
}

func (w *webhook) Limits() Limits { return Limits{Messages: w.cfg.batch, Bytes: webhookMaxBytes} }

// Send POSTs msgs: the message itself when there is one and batching is
// off, else {"batch":[…]}.
func (w *webhook) Send(ctx context.Context, id string, msgs []Message) Result {
	var body []byte
	if len(msgs) == 1 && w.cfg.batch == 1 {
		body = msgs[0].Body
	} else {
		body = batchBody(msgs)
	}
	ts := w.now()
	sig, err := w.signer.Sign(id, ts, body)
	if err != nil {
		return Result{Err: fmt.Errorf("signing: %w", err)}
	}
	req, err := http.NewRequest(http.MethodPost, w.cfg.url, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("building the request: %w", err)}
	}
	for k, v := range w.cfg.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	return w.out.do(ctx, req)
}

// userAgent names Kith to receivers.
const userAgent = "Kith-Activation/1"

// batchBody is {"batch":[m1,m2,…]}.
func batchBody(msgs []Message) []byte {
	n := len(`{"batch":[]}`)
	for _, m := range msgs {
		n += len(m.Body) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"batch":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Body...)
	}
	return append(b, "]}"...)
}
