package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// webhookReceiver is a user's service that checks X-Ferry-Signature the documented way.
type webhookReceiver struct {
	secret  string
	status  int
	headers http.Header
	body    []byte
}

func (rcv *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, []byte(rcv.secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(r.Header.Get("X-Ferry-Signature")), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rcv.headers, rcv.body = r.Header.Clone(), body
	if rcv.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "120")
	}
	w.WriteHeader(rcv.status)
}

func TestWebhook(t *testing.T) {
	rcv := &webhookReceiver{secret: "whsec-0123456789", status: http.StatusAccepted}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)

	m := failedDeployment()
	m.Secrets = []string{"db-pass-42"}
	m.LogTail = append(m.LogTail, "connecting with db-pass-42")
	s := mustSender(t, Channel{Kind: KindWebhook, URL: srv.URL + "/hooks/ferry", Secret: rcv.secret})
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := rcv.headers.Get("X-Ferry-Event"); got != "deployment.failed" {
		t.Errorf("X-Ferry-Event = %q", got)
	}
	if got := rcv.headers.Get("X-Ferry-Delivery"); got != "n-42" {
		t.Errorf("X-Ferry-Delivery = %q, want the notice id n-42", got)
	}
	if strings.Contains(string(rcv.body), "db-pass-42") {
		t.Errorf("webhook body shows a secret: %s", rcv.body)
	}
	var got struct {
		Delivery    string   `json:"delivery"`
		Title       string   `json:"title"`
		Event       string   `json:"event"`
		Project     string   `json:"project"`
		HostsFailed []string `json:"hosts_failed"`
		Commit      Commit   `json:"commit"`
		LogTail     []string `json:"log_tail"`
		Duration    int64    `json:"duration_ns"`
		Time        time.Time
	}
	if err := json.Unmarshal(rcv.body, &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if got.Delivery != "n-42" || got.Event != "deployment.failed" || got.Project != "orders" ||
		got.Title != "orders: deployment of 20240501120000-main-3f2a9c1 to prod failed" ||
		len(got.HostsFailed) != 1 || got.Commit.SHA != "3f2a9c1" || got.Duration != int64(83*time.Second) {
		t.Errorf("body fields = %+v", got)
	}
	if len(got.LogTail) != MaxLogLines || got.LogTail[MaxLogLines-1] != "connecting with ****" {
		t.Errorf("log_tail = %q, want the last %d lines, masked", got.LogTail, MaxLogLines)
	}
}

func TestWebhookFailures(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		secret        string
		wantErr       string
		wantRetryable bool
		wantWait      time.Duration
	}{
		{"wrong secret", http.StatusAccepted, "other-secret", "HTTP 401 Unauthorized: bad signature", false, 0},
		{"not found", http.StatusNotFound, "s3cret", "HTTP 404 Not Found", false, 0},
		{"unavailable", http.StatusServiceUnavailable, "s3cret", "HTTP 503 Service Unavailable", true, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&webhookReceiver{secret: "s3cret", status: tt.status})
			t.Cleanup(srv.Close)
			err := mustSender(t, Channel{Kind: KindWebhook, URL: srv.URL, Secret: tt.secret}).Send(context.Background(), failedDeployment())
			checkFailure(t, err, tt.wantErr, tt.wantRetryable)
			if SuggestedWait(err) != tt.wantWait {
				t.Errorf("SuggestedWait = %v, want %v", SuggestedWait(err), tt.wantWait)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://oapi.dingtalk.com/robot/send?access_token=abc123", "https://oapi.dingtalk.com/robot/send?access_token=****"},
		{"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=****"},
		{"https://open.feishu.cn/open-apis/bot/v2/hook/2d4b5c9e-1f3a-4c8b-9e7d-0a1b2c3d4e5f", "https://open.feishu.cn/open-apis/bot/v2/hook/****"},
		{"smtp://mailer:hunter2@mail.example.com:587", "smtp://mailer:****@mail.example.com:587"},
		{"https://hooks.example.com/ferry", "https://hooks.example.com/ferry"},
		{"::not a url::", "****"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
