package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	mailUser = "ferry@example.com"
	mailPass = "p@ss word/1"
)

// mailServer is a real SMTP server (go-smtp) that checks AUTH and records what it accepts.
type mailServer struct {
	addr       string
	mechanisms []string // AUTH mechanisms offered
	dropInData bool     // close the connection after the first bytes of DATA

	mu       sync.Mutex
	from     string
	rcpts    []string
	data     []byte
	authUser string
	sawTLS   bool
}

type serverMode int

const (
	plainSMTP serverMode = iota
	startTLSSMTP
	implicitTLSSMTP
)

func startMailServer(t *testing.T, mode serverMode, srv *mailServer) (*mailServer, *tls.Config) {
	t.Helper()
	serverTLS, clientTLS := selfSignedTLS(t)
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: srv, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	var l net.Listener
	var err error
	switch mode {
	case plainSMTP:
		s.AllowInsecureAuth = true
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case startTLSSMTP:
		s.TLSConfig = serverTLS
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case implicitTLSSMTP:
		s.TLSConfig = serverTLS
		l, err = tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	}
	if err != nil {
		t.Fatalf("listen for the test SMTP server: %v", err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	srv.addr = l.Addr().String()
	return srv, clientTLS
}

// selfSignedTLS returns a server config with a fresh certificate for 127.0.0.1 and a client
// config that trusts only that certificate.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test smtp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool}
}

type mailSession struct {
	srv    *mailServer
	conn   *smtp.Conn
	authed bool
}

func (s *mailSession) AuthMechanisms() []string { return s.srv.mechanisms }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != mailUser || pass != mailPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.authed = true
		s.srv.mu.Lock()
		s.srv.authUser = user
		s.srv.mu.Unlock()
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if len(s.srv.mechanisms) > 0 && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.from, s.srv.rcpts = from, nil
	_, s.srv.sawTLS = s.conn.TLSConnectionState()
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.rcpts = append(s.srv.rcpts, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	if s.srv.dropInData {
		io.ReadFull(r, make([]byte, 64))
		s.conn.Conn().Close()
		return errors.New("dropped")
	}
	data, err := io.ReadAll(r)
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.data = data
	return err
}

func (s *mailSession) Reset()        {}
func (s *mailSession) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl does not provide.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(response))
	}
}

func mailURL(scheme, addr, query string) string {
	return mailURLWithPassword(scheme, addr, query, mailPass)
}

func mailURLWithPassword(scheme, addr, query, pass string) string {
	u := url.URL{Scheme: scheme, User: url.UserPassword(mailUser, pass), Host: addr, RawQuery: query}
	return u.String()
}

func sendMail(t *testing.T, url string, tlsConfig *tls.Config, m Message) error {
	t.Helper()
	s, err := New(Channel{Kind: KindMail, URL: url, From: "Ferry <ferry@example.com>",
		Recipients: []string{"Ops <ops@example.com>", "张三 <zhangsan@example.com>"}},
		Options{TLSConfig: tlsConfig, Timeout: 10 * time.Second, Hostname: "ferry.test", Addresses: localAddresses})
	if err != nil {
		t.Fatalf("New mail sender: %v", err)
	}
	return s.Send(context.Background(), m)
}

func chineseFailure() Message {
	m := failedDeployment()
	m.Project = "订单服务"
	m.Commit.Title = "修复结算 <b>bug</b>"
	return m
}

func TestMailDelivery(t *testing.T) {
	tests := []struct {
		name    string
		mode    serverMode
		scheme  string
		query   string
		mechs   []string
		wantTLS bool
	}{
		{"plain SMTP with AUTH PLAIN", plainSMTP, "smtp", "", []string{sasl.Plain}, false},
		{"plain SMTP with AUTH LOGIN", plainSMTP, "smtp", "", []string{sasl.Login}, false},
		{"STARTTLS with a self-signed certificate", startTLSSMTP, "smtp", "starttls=required", []string{sasl.Plain}, true},
		{"implicit TLS", implicitTLSSMTP, "smtps", "", []string{sasl.Plain, sasl.Login}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clientTLS := startMailServer(t, tt.mode, &mailServer{mechanisms: tt.mechs})
			if err := sendMail(t, mailURL(tt.scheme, srv.addr, tt.query), clientTLS, chineseFailure()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if srv.authUser != mailUser || srv.sawTLS != tt.wantTLS {
				t.Errorf("server saw user %q and TLS %v, want %q and %v", srv.authUser, srv.sawTLS, mailUser, tt.wantTLS)
			}
			if srv.from != "ferry@example.com" || strings.Join(srv.rcpts, ",") != "ops@example.com,zhangsan@example.com" {
				t.Errorf("envelope from %q to %q", srv.from, srv.rcpts)
			}
			checkReceivedMail(t, srv.data)
		})
	}
}

// checkReceivedMail parses the mail as a mail client would and checks what a reader sees.
func checkReceivedMail(t *testing.T, data []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("received mail does not parse: %v\n%s", err, data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != "[ferry] 订单服务: deployment of 20240501120000-main-3f2a9c1 to prod failed" {
		t.Errorf("Subject = %q (%v), raw %q", subject, err, msg.Header.Get("Subject"))
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Name != "张三" || to[1].Address != "zhangsan@example.com" {
		t.Errorf("To = %v (%v)", to, err)
	}
	if from, err := msg.Header.AddressList("From"); err != nil || from[0].Address != "ferry@example.com" {
		t.Errorf("From = %v (%v)", from, err)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date header: %v", err)
	}
	if id := msg.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID = %q", id)
	}
	text, html := readAlternatives(t, msg)
	for _, want := range []string{"修复结算 <b>bug</b>", "Last log lines:", "line 30: starting worker", "https://ferry.example.com/deployments/7"} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"修复结算 &lt;b&gt;bug&lt;/b&gt;", "<pre", "line 30: starting worker", `href="https://ferry.example.com/deployments/7"`} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, html)
		}
	}
}

func readAlternatives(t *testing.T, msg *mail.Message) (text, html string) {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := parts.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read mail part: %v", err)
		}
		body, _ := io.ReadAll(p)
		switch ct := p.Header.Get("Content-Type"); ct {
		case "text/plain; charset=UTF-8":
			text = string(body)
		case "text/html; charset=UTF-8":
			html = string(body)
		default:
			t.Errorf("unexpected part %q", ct)
		}
	}
	if text == "" || html == "" {
		t.Fatalf("mail lacks a text or HTML part")
	}
	return text, html
}

func TestMailFailures(t *testing.T) {
	t.Run("server refuses the password", func(t *testing.T) {
		srv, clientTLS := startMailServer(t, startTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		err := sendMail(t, mailURLWithPassword("smtp", srv.addr, "", "wrong-password"), clientTLS, failedDeployment())
		checkFailure(t, err, "refused the user name or password (535): 5.7.8 Authentication credentials invalid", false)
		if strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("error shows the password: %v", err)
		}
	})
	t.Run("server drops the connection in DATA", func(t *testing.T) {
		srv, clientTLS := startMailServer(t, plainSMTP, &mailServer{mechanisms: []string{sasl.Plain}, dropInData: true})
		err := sendMail(t, mailURL("smtp", srv.addr, ""), clientTLS, failedDeployment())
		checkFailure(t, err, "message data", true)
	})
	t.Run("STARTTLS required but not offered", func(t *testing.T) {
		srv, clientTLS := startMailServer(t, plainSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		err := sendMail(t, mailURL("smtp", srv.addr, "starttls=required"), clientTLS, failedDeployment())
		checkFailure(t, err, "does not offer STARTTLS", false)
	})
	t.Run("certificate not trusted", func(t *testing.T) {
		srv, _ := startMailServer(t, implicitTLSSMTP, &mailServer{mechanisms: []string{sasl.Plain}})
		err := sendMail(t, mailURL("smtps", srv.addr, ""), nil, failedDeployment())
		checkFailure(t, err, "certificate is not trusted", false)
	})
	t.Run("nothing listens", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		err := sendMail(t, mailURL("smtp", addr, ""), nil, failedDeployment())
		checkFailure(t, err, "connect to "+addr, true)
	})
	t.Run("host does not resolve", func(t *testing.T) {
		err := sendMail(t, mailURL("smtps", "mail.example.invalid:465", ""), nil, failedDeployment())
		checkFailure(t, err, `host "mail.example.invalid" not found`, false)
	})
}
