package notify

import (
	"context"
	"net/http"
	"time"
)

// WeCom error codes with a meaning for retries.
const (
	WeComRateLimited = 45009 // more than 20 messages a minute: retry after a minute
	WeComBadKey      = 93000 // the webhook URL's key is invalid: permanent
	weComSysBusy     = -1
	weComPlatform    = "WeCom"
)

var weComCodes = codePolicy{WeComRateLimited: time.Minute, weComSysBusy: 0}

// weCom sends to a WeCom (企业微信) group robot
// (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…).
type weCom struct {
	client *http.Client
	url    string
}

func newWeCom(ch Channel, opt Options) (*weCom, error) {
	u, err := checkHTTPURL(KindWeCom, ch.URL)
	if err != nil {
		return nil, err
	}
	return &weCom{client: newHTTPClient(opt), url: u.String()}, nil
}

// Send posts m to the robot as markdown; see Sender.
func (w *weCom) Send(ctx context.Context, m Message) error {
	r := RenderMarkdown(m, WeComLimit)
	body, err := encodeJSON(weComPlatform, map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": r.Body}})
	if err != nil {
		return err
	}
	a, err := postJSON(ctx, w.client, weComPlatform, w.url, body, nil)
	if err != nil {
		return err
	}
	return robotResult(weComPlatform, "errcode", a, weComCodes)
}
