package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	robotToken  = "0123456789abcdef0123456789abcdef"
	robotSecret = "SECdeadbeefcafebabe0123456789"
)

// robotServer is a stand-in for a chat platform: it checks what a sender posts the way the
// platform would and answers in the platform's own shapes.
type robotServer struct {
	*httptest.Server
	mu       sync.Mutex
	received []map[string]any
}

// record keeps a decoded request body; it fails the request when the body is not JSON.
func (s *robotServer) record(t *testing.T, r *http.Request) map[string]any {
	t.Helper()
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Errorf("robot got %s with Content-Type %q, want a JSON POST", r.Method, r.Header.Get("Content-Type"))
	}
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(data, &body); err != nil {
		t.Errorf("robot got a body that is not JSON: %v\n%s", err, data)
	}
	s.mu.Lock()
	s.received = append(s.received, body)
	s.mu.Unlock()
	return body
}

func (s *robotServer) last(t *testing.T) map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.received) == 0 {
		t.Fatal("the robot received nothing")
	}
	return s.received[len(s.received)-1]
}

func newRobot(t *testing.T, handle func(s *robotServer, w http.ResponseWriter, r *http.Request)) *robotServer {
	s := &robotServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(s, w, r) }))
	t.Cleanup(s.Close)
	return s
}

func hmacBase64(key, msg string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func within(ts int64, unit time.Duration, d time.Duration) bool {
	diff := time.Since(time.Unix(0, ts*int64(unit)))
	return diff < d && diff > -d
}

// dingTalkRobot behaves like oapi.dingtalk.com/robot/send for a robot with robotSecret and
// keyword "ferry". mode "fast" answers as when more than 20 messages came in a minute.
func dingTalkRobot(t *testing.T, mode string) *robotServer {
	return newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		body := s.record(t, r)
		q := r.URL.Query()
		ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
		switch {
		case mode == "500":
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
		case q.Get("access_token") != robotToken:
			io.WriteString(w, `{"errcode":300001,"errmsg":"token is not exist"}`)
		case !within(ts, time.Millisecond, time.Hour) || q.Get("sign") != hmacBase64(robotSecret, q.Get("timestamp")+"\n"+robotSecret):
			io.WriteString(w, `{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}`)
		case !strings.Contains(markdownText(body), "ferry"):
			io.WriteString(w, `{"errcode":310000,"errmsg":"keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}`)
		case mode == "fast":
			io.WriteString(w, `{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}`)
		default:
			io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
		}
	})
}

func markdownText(body map[string]any) string {
	for _, key := range []string{"markdown", "actionCard"} {
		if part, ok := body[key].(map[string]any); ok {
			text, _ := part["text"].(string)
			return text
		}
	}
	return ""
}

func mustSender(t *testing.T, ch Channel) Sender {
	t.Helper()
	s, err := New(ch, testOptions())
	if err != nil {
		t.Fatalf("New(%s): %v", ch.Kind, err)
	}
	return s
}

// checkFailure asserts what a user reads in a failed send: the platform's reason, whether it
// is worth retrying, and no secret in the text.
func checkFailure(t *testing.T, err error, wantText string, wantRetryable bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("Send succeeded, want an error saying %q", wantText)
	}
	if !strings.Contains(err.Error(), wantText) {
		t.Errorf("error %q does not say %q", err, wantText)
	}
	if Retryable(err) != wantRetryable {
		t.Errorf("Retryable(%q) = %v, want %v", err, !wantRetryable, wantRetryable)
	}
	for _, secret := range []string{robotToken, robotSecret} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows a secret: %q", err)
		}
	}
}

func TestDingTalk(t *testing.T) {
	tests := []struct {
		name, mode, token, secret, format string
		wantErr                           string
		wantRetryable                     bool
		wantWait                          time.Duration
	}{
		{name: "signed markdown with keyword", token: robotToken, secret: robotSecret},
		{name: "action card", token: robotToken, secret: robotSecret, format: "actionCard"},
		{name: "wrong secret", token: robotToken, secret: "SECwrong", wantErr: "DingTalk: answered errcode 310000: sign not match"},
		{name: "no secret where one is needed", token: robotToken, wantErr: "errcode 310000"},
		{name: "unknown token", token: "nope", secret: robotSecret, wantErr: "errcode 300001: token is not exist"},
		{name: "too fast", mode: "fast", token: robotToken, secret: robotSecret, wantErr: "errcode 130101: send too fast", wantRetryable: true, wantWait: time.Minute},
		{name: "server error", mode: "500", token: robotToken, secret: robotSecret, wantErr: "HTTP 500 Internal Server Error: upstream exploded", wantRetryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			robot := dingTalkRobot(t, tt.mode)
			s := mustSender(t, Channel{Kind: KindDingTalk, URL: robot.URL + "/robot/send?access_token=" + tt.token,
				Secret: tt.secret, Keyword: "ferry", Format: tt.format})
			err := s.Send(context.Background(), failedDeployment())
			if tt.wantErr != "" {
				checkFailure(t, err, tt.wantErr, tt.wantRetryable)
				if got := SuggestedWait(err); got != tt.wantWait {
					t.Errorf("SuggestedWait = %v, want %v", got, tt.wantWait)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			body := robot.last(t)
			wantType := map[string]string{"": "markdown", "actionCard": "actionCard"}[tt.format]
			if body["msgtype"] != wantType {
				t.Errorf("msgtype = %v, want %s", body["msgtype"], wantType)
			}
			if text := markdownText(body); !strings.Contains(text, "deployment of 20240501120000-main-3f2a9c1 to prod failed") {
				t.Errorf("text lacks the title:\n%s", text)
			}
			if tt.format == "actionCard" {
				card := body["actionCard"].(map[string]any)
				if card["singleURL"] != "https://ferry.example.com/deployments/7" {
					t.Errorf("action card button goes to %v", card["singleURL"])
				}
			}
		})
	}
}

func TestDingTalkKeepsSizeLimit(t *testing.T) {
	robot := dingTalkRobot(t, "")
	s := mustSender(t, Channel{Kind: KindDingTalk, URL: robot.URL + "/robot/send?access_token=" + robotToken, Secret: robotSecret, Keyword: "ferry-bot"})
	m := failedDeployment()
	m.Project = "订单"
	m.LogTail = []string{strings.Repeat("编译错误：找不到符号。", 2000)}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	text := markdownText(robot.last(t))
	if len(text) > DingTalkLimit || !strings.Contains(text, TruncatedMark) || !strings.HasSuffix(text, "\n\nferry-bot") {
		t.Errorf("text has %d bytes (limit %d), truncated mark %v, ends %q", len(text), DingTalkLimit,
			strings.Contains(text, TruncatedMark), text[max(0, len(text)-20):])
	}
}

func TestWeCom(t *testing.T) {
	robot := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		body := s.record(t, r)
		md, _ := body["markdown"].(map[string]any)
		content, _ := md["content"].(string)
		switch {
		case r.URL.Query().Get("key") != robotToken:
			io.WriteString(w, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [1716179437_5e2b3c1f], from ip: 10.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}`)
		case body["msgtype"] != "markdown" || content == "":
			io.WriteString(w, `{"errcode":40008,"errmsg":"invalid message type"}`)
		case len(content) > WeComLimit:
			io.WriteString(w, `{"errcode":40058,"errmsg":"markdown.content exceed max length 4096"}`)
		case strings.Contains(content, "rate"):
			io.WriteString(w, `{"errcode":45009,"errmsg":"api freq out of limit"}`)
		default:
			io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
		}
	})
	send := func(key string, m Message) error {
		return mustSender(t, Channel{Kind: KindWeCom, URL: robot.URL + "/cgi-bin/webhook/send?key=" + key}).Send(context.Background(), m)
	}

	big := failedDeployment()
	big.LogTail = []string{strings.Repeat("依赖下载失败 ", 3000)}
	if err := send(robotToken, big); err != nil {
		t.Errorf("Send of a long message: %v (it must be cut to %d bytes)", err, WeComLimit)
	}
	checkFailure(t, send("wrong-key", failedDeployment()), "WeCom: answered errcode 93000: invalid webhook url", false)
	limited := failedDeployment()
	limited.Commit.Title = "rate"
	err := send(robotToken, limited)
	checkFailure(t, err, "errcode 45009: api freq out of limit", true)
	if SuggestedWait(err) != time.Minute {
		t.Errorf("SuggestedWait = %v, want 1m", SuggestedWait(err))
	}
}

func feishuRobot(t *testing.T) *robotServer {
	return newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		body := s.record(t, r)
		tsText, _ := body["timestamp"].(string)
		ts, _ := strconv.ParseInt(tsText, 10, 64)
		switch {
		case r.ContentLength > 30<<10:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"code":9499,"msg":"Bad Request: request body too large"}`)
		case !strings.HasSuffix(r.URL.Path, "/open-apis/bot/v2/hook/"+robotToken):
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}`)
		case !within(ts, time.Second, time.Hour) || body["sign"] != hmacBase64(tsText+"\n"+robotSecret, ""):
			io.WriteString(w, `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`)
		case body["msg_type"] == "text" && strings.Contains(body["content"].(map[string]any)["text"].(string), "rate"):
			io.WriteString(w, `{"code":11232,"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}`)
		default:
			io.WriteString(w, `{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}`)
		}
	})
}

func TestFeishu(t *testing.T) {
	robot := feishuRobot(t)
	hook := robot.URL + "/open-apis/bot/v2/hook/" + robotToken
	send := func(url, secret, format string, m Message) error {
		return mustSender(t, Channel{Kind: KindFeishu, URL: url, Secret: secret, Format: format}).Send(context.Background(), m)
	}

	if err := send(hook, robotSecret, "", failedDeployment()); err != nil {
		t.Fatalf("Send card: %v", err)
	}
	card := robot.last(t)["card"].(map[string]any)
	header := card["header"].(map[string]any)
	if header["template"] != "red" || !strings.Contains(header["title"].(map[string]any)["content"].(string), "to prod failed") {
		t.Errorf("card header = %v", header)
	}
	if !strings.Contains(mustJSON(t, card), `"url":"https://ferry.example.com/deployments/7"`) {
		t.Errorf("card has no button to the page: %s", mustJSON(t, card))
	}
	for _, format := range []string{"post", "text"} {
		if err := send(hook, robotSecret, format, failedDeployment()); err != nil {
			t.Errorf("Send %s: %v", format, err)
		}
		if got := robot.last(t)["msg_type"]; got != format {
			t.Errorf("msg_type = %v, want %s", got, format)
		}
	}

	escapes := failedDeployment()
	escapes.LogTail = []string{strings.Repeat("\"\\\x01<>&", 6000)} // grows up to 6x in JSON
	for _, format := range []string{"interactive", "post", "text"} {
		if err := send(hook, robotSecret, format, escapes); err != nil {
			t.Errorf("Send %s of a log that grows when escaped: %v", format, err)
		}
	}

	checkFailure(t, send(hook, "wrong", "", failedDeployment()), "Feishu: answered code 19021: sign match fail", false)
	limited := failedDeployment()
	limited.Commit.Title = "rate"
	checkFailure(t, send(hook, robotSecret, "text", limited), "code 11232: frequency limited", true)
	err := send(robot.URL+"/open-apis/bot/v2/hook/00000000-0000-0000-0000-000000000000", robotSecret, "", failedDeployment())
	checkFailure(t, err, "code 19001: param invalid", false)
	if strings.Contains(err.Error(), "00000000-0000") {
		t.Errorf("error shows the hook token: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRobotURLThatDoesNotResolve(t *testing.T) {
	for _, ch := range []Channel{
		{Kind: KindDingTalk, URL: "https://oapi.dingtalk.invalid/robot/send?access_token=" + robotToken, Secret: robotSecret},
		{Kind: KindWeCom, URL: "https://qyapi.weixin.invalid/cgi-bin/webhook/send?key=" + robotToken},
		{Kind: KindFeishu, URL: "https://open.feishu.invalid/open-apis/bot/v2/hook/" + robotToken, Secret: robotSecret},
		{Kind: KindWebhook, URL: "https://hooks.example.invalid/ferry?token=" + robotToken, Secret: robotSecret},
	} {
		t.Run(ch.Kind, func(t *testing.T) {
			err := mustSender(t, ch).Send(context.Background(), failedDeployment())
			checkFailure(t, err, "not found", false)
			if !strings.Contains(err.Error(), ".invalid") {
				t.Errorf("error does not name the host: %v", err)
			}
		})
	}
}

func TestRobotRefusesRedirectToAnotherHost(t *testing.T) {
	elsewhere := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		t.Error("the sender followed a redirect to another host")
	})
	robot := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1)+"/steal", http.StatusTemporaryRedirect)
	})
	err := mustSender(t, Channel{Kind: KindWeCom, URL: robot.URL + "/send?key=" + robotToken}).Send(context.Background(), failedDeployment())
	checkFailure(t, err, "refused to follow a redirect to another host (localhost:", false)
}

func TestRobotAnswerIsReadOnlyUpToALimit(t *testing.T) {
	robot := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		for i := 0; i < 1000; i++ {
			io.WriteString(w, strings.Repeat("<html>gateway error</html>", 400))
		}
	})
	err := mustSender(t, Channel{Kind: KindWeCom, URL: robot.URL + "/send?key=k"}).Send(context.Background(), failedDeployment())
	checkFailure(t, err, "HTTP 502 Bad Gateway: <html>gateway error", true)
	if len(err.Error()) > 600 {
		t.Errorf("error quotes %d bytes of the answer", len(err.Error()))
	}
}

func TestSendStopsWhenContextIsCanceled(t *testing.T) {
	robot := newRobot(t, func(s *robotServer, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // from here on the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := mustSender(t, Channel{Kind: KindWeCom, URL: robot.URL + "/send?key=k"}).Send(ctx, failedDeployment())
	if !errors.Is(err, context.Canceled) || Retryable(err) {
		t.Errorf("Send after cancel = %v (retryable %v), want context.Canceled, not retryable", err, Retryable(err))
	}
}

func TestNewRejectsBadChannels(t *testing.T) {
	for _, ch := range []Channel{
		{Kind: "pager"},
		{Kind: KindDingTalk, URL: "ftp://x/y?access_token=" + robotToken},
		{Kind: KindDingTalk, URL: "https://oapi.dingtalk.com/robot/send", Format: "news"},
		{Kind: KindFeishu, URL: "https://open.feishu.cn/x", Format: "image"},
		{Kind: KindWebhook, URL: "not a url"},
		{Kind: KindMail, URL: "http://mail.example.com", Recipients: []string{"a@example.com"}},
		{Kind: KindMail, URL: "smtp://mail.example.com", Recipients: nil},
		{Kind: KindMail, URL: "smtp://mail.example.com", Recipients: []string{"not an address"}},
		{Kind: KindMail, URL: "smtp://mail.example.com?starttls=maybe", Recipients: []string{"a@example.com"}},
	} {
		_, err := New(ch, Options{})
		if err == nil {
			t.Errorf("New(%+v) accepted a bad channel", ch)
			continue
		}
		if strings.Contains(err.Error(), robotToken) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}
