package notify

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"ferry/store"
)

// TestChannelURLsRefusedAsWritten: URLs naming this machine or a metadata service, written
// as addresses or as such names, are refused before anything is sent, with an error naming
// the url field; a private network address is allowed, and so is loopback when allowed.
func TestChannelURLsRefusedAsWritten(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, tt := range []struct{ kind, url, want string }{
		{KindWebhook, "http://127.0.0.1:" + port + "/hook", "loopback"},
		{KindWebhook, "http://127.1.2.3:" + port + "/hook", "loopback"},
		{KindWebhook, "http://[::1]:" + port + "/hook", "loopback"},
		{KindWebhook, "http://[::ffff:127.0.0.1]:" + port + "/hook", "loopback"},
		{KindWebhook, "http://localhost:" + port + "/hook", "this machine"},
		{KindWebhook, "http://LOCALHOST.:" + port + "/hook", "this machine"},
		{KindWebhook, "http://0.0.0.0:" + port + "/hook", "unspecified"},
		{KindDingTalk, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "link-local"},
		{KindWeCom, "http://[fe80::1]/x", "link-local"},
		{KindFeishu, "http://100.100.100.200/latest/meta-data/", "Alibaba Cloud metadata"},
		{KindWebhook, "http://metadata.google.internal/computeMetadata/v1/", "metadata"},
		{KindMail, "smtp://127.0.0.1:25", "loopback"},
		{KindMail, "smtps://localhost:465", "this machine"},
	} {
		ch := Channel{Kind: tt.kind, URL: tt.url, Recipients: []string{"ops@example.com"}}
		_, err := New(ch, Options{})
		if store.ErrorCode(err) != store.EINVALID || !strings.HasPrefix(store.ErrorMessage(err), "url:") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %s: New = %v; want a 400 naming url and saying %q", tt.kind, tt.url, err, tt.want)
		}
		if err := (AddressPolicy{}).CheckURL(tt.url); err == nil {
			t.Errorf("CheckURL(%s) allowed it", tt.url)
		}
	}
	for _, ok := range []string{"https://oapi.dingtalk.com/robot/send", "http://10.1.2.3:8080/hook", "http://192.168.1.5/x", "http://[fd12::5]/x", "smtp://mail.internal:25"} {
		if err := (AddressPolicy{}).CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%s) = %v, want allowed (private networks are)", ok, err)
		}
	}
	// Allowed explicitly, loopback works (so the refusals above were the policy's).
	allow, err := ParseAllowedNets("127.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Channel{Kind: KindWebhook, URL: "http://localhost:" + port + "/hook"}, Options{Addresses: AddressPolicy{Allowed: allow}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), failedDeployment()); err != nil || hits.Load() != 1 {
		t.Fatalf("allowed loopback: Send = %v, %d requests", err, hits.Load())
	}
	if _, err := ParseAllowedNets("127.0.0.0/8,not-a-net"); err == nil || !strings.Contains(err.Error(), "not-a-net") {
		t.Errorf("ParseAllowedNets of a bad entry = %v", err)
	}
}

// TestChannelNamesResolvingInsideAreRefused: a harmless-looking name that resolves to
// 127.0.0.1 or to the metadata address 169.254.169.254 passes the check as written, but the
// connection is refused on the address actually dialed, so no request reaches the server (and
// a name that rebinds between check and dial gains nothing).
func TestChannelNamesResolvingInsideAreRefused(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	smtpAddr := lineServer(t, "220 mail.internal ESMTP\r\n")
	smtpPort := smtpAddr[strings.LastIndex(smtpAddr, ":")+1:]
	resolver := fakeDNS(t, map[string]string{"hooks.ferry.test.": "127.0.0.1", "meta.ferry.test.": "169.254.169.254"})

	for _, tt := range []struct {
		ch   Channel
		want string
	}{
		{Channel{Kind: KindWebhook, URL: "http://hooks.ferry.test:" + port + "/hook"}, "127.0.0.1 is a loopback address"},
		{Channel{Kind: KindDingTalk, URL: "http://meta.ferry.test/latest/meta-data?access_token=x"}, "169.254.169.254 is a link-local address"},
		{Channel{Kind: KindMail, URL: "smtp://hooks.ferry.test:" + smtpPort, Recipients: []string{"ops@example.com"}}, "127.0.0.1 is a loopback address"},
	} {
		s, err := New(tt.ch, Options{Resolver: resolver})
		if err != nil {
			t.Fatalf("%s: New = %v; a name is checked when dialed", tt.ch.URL, err)
		}
		err = s.Send(context.Background(), failedDeployment())
		if err == nil || !strings.Contains(err.Error(), tt.want) || Retryable(err) {
			t.Errorf("%s: Send = %v; want a permanent refusal saying %q", tt.ch.URL, err, tt.want)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests reached the server on 127.0.0.1", hits.Load())
	}
	// The same name with loopback allowed is sent: the name does resolve, the policy refused it.
	allowed := Options{Resolver: resolver, Addresses: localAddresses}
	s, err := New(Channel{Kind: KindWebhook, URL: "http://hooks.ferry.test:" + port + "/hook"}, allowed)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), failedDeployment()); err != nil || hits.Load() != 1 {
		t.Fatalf("allowed: Send = %v, %d requests", err, hits.Load())
	}
}

// fakeDNS runs a DNS server on 127.0.0.1 that answers A queries for names and nothing else,
// and returns a resolver that asks only it.
func fakeDNS(t *testing.T, names map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer, err := dnsAnswer(buf[:n], names); err == nil {
				pc.WriteTo(answer, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func dnsAnswer(query []byte, names map[string]string) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if ip, ok := names[strings.ToLower(q.Name.String())]; ok && q.Type == dnsmessage.TypeA {
		a := netip.MustParseAddr(ip).As4()
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: a}); err != nil {
			return nil, err
		}
	} else if !ok {
		return nil, errors.New("unknown name")
	}
	return b.Finish()
}

// TestChannelThroughProxyOnThisMachine: with HTTPS_PROXY/HTTP_PROXY pointing at a proxy on
// 127.0.0.1 (which the administrator set), channels still go out through it; the policy
// applies to the addresses ferry itself dials for the channel.
func TestChannelThroughProxyOnThisMachine(t *testing.T) {
	var target atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target.Store(r.URL.String())
	}))
	t.Cleanup(proxy.Close)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	s, err := New(Channel{Kind: KindWebhook, URL: "http://hooks.example.com/ferry"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), failedDeployment()); err != nil {
		t.Fatalf("Send through the proxy: %v", err)
	}
	if got, _ := target.Load().(string); got != "http://hooks.example.com/ferry" {
		t.Fatalf("the proxy was asked for %q", got)
	}
}
