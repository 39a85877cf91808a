package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// DingTalk error codes with a meaning for retries.
const (
	DingTalkBadSign  = 310000 // sign not match, keyword missing, or IP not allowed: permanent
	DingTalkTooFast  = 130101 // more than 20 messages a minute: retry after a minute
	dingTalkSysBusy  = -1
	dingTalkPlatform = "DingTalk"
)

var dingTalkCodes = codePolicy{DingTalkTooFast: time.Minute, dingTalkSysBusy: 0}

// dingTalk sends to a DingTalk custom robot
// (https://oapi.dingtalk.com/robot/send?access_token=…).
type dingTalk struct {
	client  *http.Client
	url     *url.URL
	secret  string
	keyword string
	format  string
	now     func() time.Time
}

func newDingTalk(ch Channel, opt Options) (*dingTalk, error) {
	u, err := checkHTTPURL(KindDingTalk, ch.URL)
	if err != nil {
		return nil, err
	}
	format := ch.Format
	if format == "" {
		format = "markdown"
	}
	if format != "markdown" && format != "actionCard" {
		return nil, store.Errorf(store.EINVALID, "dingtalk channel: format must be markdown or actionCard, got %q", ch.Format)
	}
	return &dingTalk{client: newHTTPClient(opt), url: u, secret: ch.Secret, keyword: ch.Keyword, format: format, now: opt.now}, nil
}

// Send posts m to the robot; see Sender.
func (d *dingTalk) Send(ctx context.Context, m Message) error {
	body, err := d.payload(m)
	if err != nil {
		return err
	}
	a, err := postJSON(ctx, d.client, dingTalkPlatform, d.signedURL(), body, nil)
	if err != nil {
		return err
	}
	return robotResult(dingTalkPlatform, "errcode", a, dingTalkCodes)
}

// signedURL adds timestamp and sign to the robot URL when a secret is set.
func (d *dingTalk) signedURL() string {
	if d.secret == "" {
		return d.url.String()
	}
	u := *d.url
	q := u.Query()
	ts := strconv.FormatInt(d.now().UnixMilli(), 10)
	q.Set("timestamp", ts)
	q.Set("sign", DingTalkSign(ts, d.secret))
	u.RawQuery = q.Encode()
	return u.String()
}

// DingTalkSign returns DingTalk's signature of a millisecond timestamp: base64 of
// HMAC-SHA256 with the secret as key over timestamp + "\n" + secret (URL-encoding is left to
// the query string).
func DingTalkSign(timestampMillis, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestampMillis + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (d *dingTalk) payload(m Message) ([]byte, error) {
	r := RenderMarkdown(m, DingTalkLimit-len(d.keyword)-2)
	r.Body = withKeyword(r.Body, d.keyword)
	var v any
	if d.format == "actionCard" && m.URL != "" {
		v = map[string]any{"msgtype": "actionCard", "actionCard": map[string]string{
			"title": r.Title, "text": r.Body, "singleTitle": "Open in ferry", "singleURL": m.URL, "btnOrientation": "0",
		}}
	} else {
		v = map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": r.Title, "text": r.Body}}
	}
	return encodeJSON(dingTalkPlatform, v)
}

// withKeyword appends the robot's required keyword when text lacks it.
func withKeyword(text, keyword string) string {
	if keyword == "" || strings.Contains(text, keyword) {
		return text
	}
	return fmt.Sprintf("%s\n\n%s", text, keyword)
}
