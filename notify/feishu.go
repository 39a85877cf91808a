package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"ferry/store"
)

// Feishu error codes with a meaning for retries.
const (
	FeishuBadSign     = 19021 // signature wrong or timestamp off by more than an hour: permanent
	FeishuRateLimited = 11232 // more than 5 messages a second: retry after a pause
	feishuPlatform    = "Feishu"
	feishuMaxRequest  = 30 << 10 // bytes of a whole request the bot accepts
)

var feishuCodes = codePolicy{FeishuRateLimited: 2 * time.Second}

// feishu sends to a Feishu/Lark custom bot (https://open.feishu.cn/open-apis/bot/v2/hook/…).
type feishu struct {
	client  *http.Client
	url     string
	secret  string
	keyword string
	format  string
	now     func() time.Time
}

func newFeishu(ch Channel, opt Options) (*feishu, error) {
	u, err := checkHTTPURL(KindFeishu, ch.URL)
	if err != nil {
		return nil, err
	}
	format := ch.Format
	if format == "" {
		format = "interactive"
	}
	if format != "interactive" && format != "post" && format != "text" {
		return nil, store.Errorf(store.EINVALID, "feishu channel: format must be interactive, post or text, got %q", ch.Format)
	}
	return &feishu{client: newHTTPClient(opt), url: u.String(), secret: ch.Secret, keyword: ch.Keyword, format: format, now: opt.now}, nil
}

// Send posts m to the bot; see Sender.
func (f *feishu) Send(ctx context.Context, m Message) error {
	body, err := f.body(m)
	if err != nil {
		return err
	}
	a, err := postJSON(ctx, f.client, feishuPlatform, f.url, body, nil)
	if err != nil {
		return err
	}
	return robotResult(feishuPlatform, "code", a, feishuCodes)
}

// body encodes m for the bot, shrinking the text until the request fits feishuMaxRequest:
// JSON escaping can make a log with many quotes or control characters grow.
func (f *feishu) body(m Message) ([]byte, error) {
	limit := FeishuLimit
	for {
		payload := f.payload(m, limit)
		if f.secret != "" {
			ts := strconv.FormatInt(f.now().Unix(), 10)
			payload["timestamp"] = ts
			payload["sign"] = FeishuSign(ts, f.secret)
		}
		body, err := encodeJSON(feishuPlatform, payload)
		if err != nil || len(body) <= feishuMaxRequest || limit <= 1024 {
			return body, err
		}
		limit = max(limit-(len(body)-feishuMaxRequest)-512, 1024)
	}
}

// FeishuSign returns Feishu's signature of a timestamp in seconds: base64 of HMAC-SHA256
// keyed with timestamp + "\n" + secret over an empty message.
func FeishuSign(timestampSeconds, secret string) string {
	mac := hmac.New(sha256.New, []byte(timestampSeconds+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (f *feishu) payload(m Message, limit int) map[string]any {
	limit -= len(f.keyword) + 2
	switch f.format {
	case "text":
		r := RenderText(m, limit)
		return map[string]any{"msg_type": "text", "content": map[string]string{"text": withKeyword(r.Body, f.keyword)}}
	case "post":
		r := RenderText(m, limit)
		lines := [][]map[string]string{{{"tag": "text", "text": withKeyword(r.Body, f.keyword)}}}
		if m.URL != "" {
			lines = append(lines, []map[string]string{{"tag": "a", "text": "Open in ferry", "href": m.URL}})
		}
		return map[string]any{"msg_type": "post", "content": map[string]any{
			"post": map[string]any{"zh_cn": map[string]any{"title": r.Title, "content": lines}},
		}}
	default:
		return map[string]any{"msg_type": "interactive", "card": feishuCard(m, f.keyword, limit)}
	}
}

func feishuCard(m Message, keyword string, limit int) map[string]any {
	r := RenderMarkdown(m, limit)
	elements := []any{map[string]string{"tag": "markdown", "content": withKeyword(r.Body, keyword)}}
	if m.URL != "" {
		elements = append(elements, map[string]any{"tag": "action", "actions": []any{map[string]any{
			"tag": "button", "type": "primary", "url": m.URL,
			"text": map[string]string{"tag": "plain_text", "content": "Open in ferry"},
		}}})
	}
	return map[string]any{
		"config":   map[string]bool{"wide_screen_mode": true},
		"header":   map[string]any{"template": cardColor(m.Event), "title": map[string]string{"tag": "plain_text", "content": r.Title}},
		"elements": elements,
	}
}

func cardColor(e Event) string {
	switch e {
	case BuildFailed, DeploymentFailed:
		return "red"
	case BuildSucceeded, DeploymentSucceeded:
		return "green"
	case DeploymentCanceled:
		return "grey"
	case Digest:
		return "orange"
	default:
		return "blue"
	}
}
