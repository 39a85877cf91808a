package notify

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// internalSecret stands for what an internal service behind ferry returns: whoever may set
// a channel URL must not read it through ferry's error messages.
const internalSecret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG"

// TestAnswerBodyIsNotPublic points each kind of channel at a server that answers with a
// secret in its body (or SMTP reply), the way an internal service would. The whole error
// (for administrators and the log) quotes it; the public text has the status or code only.
func TestAnswerBodyIsNotPublic(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, internalSecret)
	}))
	t.Cleanup(plain.Close)
	coded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"errcode":40001,"errmsg":%q}`, internalSecret)
	}))
	t.Cleanup(coded.Close)
	ok200 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, internalSecret)
	}))
	t.Cleanup(ok200.Close)
	smtpLike := lineServer(t, "220 "+internalSecret+"\r\n", "554 5.7.1 "+internalSecret+"\r\n", "554 5.7.1 "+internalSecret+"\r\n")
	notSMTP := lineServer(t, "HTTP/1.1 400 "+internalSecret+"\r\n")

	tests := []struct {
		name       string
		ch         Channel
		wantPublic string
	}{
		{"webhook answering 403 with a body", Channel{Kind: KindWebhook, URL: plain.URL + "/hook"}, "answered HTTP 403 Forbidden"},
		{"robot answering an error code", Channel{Kind: KindWeCom, URL: coded.URL + "/cgi-bin/webhook/send?key=k"}, "answered errcode 40001"},
		{"robot answering 200 without a code", Channel{Kind: KindDingTalk, URL: ok200.URL + "/robot/send?access_token=t"}, "answered HTTP 200 without a result code"},
		{"SMTP server refusing the greeting", Channel{Kind: KindMail, URL: "smtp://" + smtpLike, Recipients: []string{"ops@example.com"}}, "server answered 554"},
		{"a server that is not SMTP", Channel{Kind: KindMail, URL: "smtp://" + notSMTP, Recipients: []string{"ops@example.com"}}, "does not answer as an SMTP server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.ch, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Send(context.Background(), failedDeployment())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if !strings.Contains(err.Error(), "wJalrXUtnFEMI") {
				t.Errorf("the whole error %q does not quote the answer (administrators need it)", err)
			}
			public := PublicText(err)
			if strings.Contains(public, "wJalrXUtnFEMI") || strings.Contains(public, "AWS_SECRET") {
				t.Errorf("public text shows the server's answer: %q", public)
			}
			if !strings.Contains(public, tt.wantPublic) {
				t.Errorf("public text %q does not say %q", public, tt.wantPublic)
			}
		})
	}
}

// lineServer accepts one TCP connection at a time and writes lines: its first line at once,
// each further one after reading a line from the client.
func lineServer(t *testing.T, lines ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for i, l := range lines {
					if i > 0 {
						if _, err := r.ReadString('\n'); err != nil {
							return
						}
					}
					io.WriteString(conn, l)
				}
				io.Copy(io.Discard, r)
			}()
		}
	}()
	return ln.Addr().String()
}

// localAddresses lets tests send to their servers on this machine, as
// FERRY_CHANNEL_ALLOWED_NETS=127.0.0.0/8,::1 does.
var localAddresses = AddressPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}

// testOptions are the options of tests that send to servers on this machine.
func testOptions() Options {
	return Options{Timeout: 5 * time.Second, Addresses: localAddresses}
}
