package notify

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
)

const webhookPlatform = "webhook"

// webhook posts the message as JSON to any URL.
//
// The body is a JSON object with these stable fields (omitted when empty):
//
//	delivery      string   the delivery id, also in the X-Ferry-Delivery header
//	title         string   one-line summary, e.g. "orders: deployment of v12 to prod failed"
//	id            string   the notice's id (the same on every retry of one notice)
//	event         string   build.failed, build.succeeded, deployment.started,
//	                       deployment.succeeded, deployment.failed, deployment.canceled, digest
//	project, version, environment, triggered_by, url   strings
//	commit        object   {"sha", "author", "title"}
//	hosts_ok, hosts_failed   arrays of host names
//	duration_ns   number   nanoseconds
//	log_tail      array    the last 20 log lines, secrets masked
//	time          string   RFC 3339
//	merged        array    for a digest: the merged messages, same fields
//
// Headers: X-Ferry-Event (the event), X-Ferry-Delivery, and, when the channel has a secret,
// X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body keyed with the secret>.
// Any 2xx answer is success.
type webhook struct {
	client *http.Client
	url    string
	secret string
}

type webhookPayload struct {
	Delivery string `json:"delivery"`
	Title    string `json:"title"`
	Message
}

func newWebhook(ch Channel, opt Options) (*webhook, error) {
	u, err := checkHTTPURL(KindWebhook, ch.URL)
	if err != nil {
		return nil, err
	}
	return &webhook{client: newHTTPClient(opt), url: u.String(), secret: ch.Secret}, nil
}

// Send posts m; see Sender.
func (w *webhook) Send(ctx context.Context, m Message) error {
	delivery := m.ID
	if delivery == "" {
		delivery = randomID()
	}
	body, err := json.Marshal(webhookPayload{Delivery: delivery, Title: Mask(m.Title(), m.Secrets), Message: maskMessage(m, nil)})
	if err != nil {
		return permanentf(webhookPlatform, "encode message: %v", err)
	}
	header := http.Header{}
	header.Set("X-Ferry-Event", string(m.Event))
	header.Set("X-Ferry-Delivery", delivery)
	if w.secret != "" {
		header.Set("X-Ferry-Signature", WebhookSignature(body, w.secret))
	}
	a, err := postJSON(ctx, w.client, webhookPlatform, w.url, body, header)
	if err != nil {
		return err
	}
	if se := statusError(webhookPlatform, a); se != nil {
		return se
	}
	return nil
}

// WebhookSignature returns the X-Ferry-Signature value for body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret. Receivers compare it with hmac.Equal.
func WebhookSignature(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// maskMessage returns a copy of m fit to leave ferry: free text masked, the log tail cut to
// its last MaxLogLines lines, merged messages likewise.
func maskMessage(m Message, inherited []string) Message {
	secrets := append(append([]string{}, inherited...), m.Secrets...)
	mask := func(s string) string { return Mask(s, secrets) }
	m.Commit.Title, m.Commit.Author = mask(m.Commit.Title), mask(m.Commit.Author)
	m.TriggeredBy, m.Version, m.Environment = mask(m.TriggeredBy), mask(m.Version), mask(m.Environment)
	if len(m.LogTail) > 0 {
		m.LogTail = lastLines([]string{mask(strings.Join(m.LogTail, "\n"))}, MaxLogLines)
	}
	merged := make([]Message, 0, len(m.Merged))
	for _, sub := range m.Merged {
		merged = append(merged, maskMessage(sub, secrets))
	}
	if len(merged) > 0 {
		m.Merged = merged
	}
	m.Secrets = nil
	return m
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
