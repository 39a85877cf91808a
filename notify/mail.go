package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"ferry/store"
)

const (
	mailPlatform       = "mail"
	defaultMailTimeout = 60 * time.Second
)

// mailSender delivers messages over SMTP.
type mailSender struct {
	host, addr  string
	implicitTLS bool
	requireTLS  bool
	user, pass  string
	from        *mail.Address
	to          []*mail.Address
	tlsConfig   *tls.Config
	timeout     time.Duration
	hostname    string
	now         func() time.Time
	addresses   AddressPolicy
	resolver    *net.Resolver
}

func newMailSender(ch Channel, opt Options) (*mailSender, error) {
	u, err := url.Parse(strings.TrimSpace(ch.URL))
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
		return nil, store.Errorf(store.EINVALID, "mail channel: url must look like smtp://user:pass@host:587 or smtps://user:pass@host:465, got %s", RedactURL(ch.URL))
	}
	s := &mailSender{host: u.Hostname(), implicitTLS: u.Scheme == "smtps", timeout: opt.timeout(defaultMailTimeout),
		hostname: opt.Hostname, now: opt.now, addresses: opt.Addresses, resolver: opt.Resolver}
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "465", false: "25"}[s.implicitTLS]
	}
	s.addr = net.JoinHostPort(s.host, port)
	switch mode := u.Query().Get("starttls"); mode {
	case "", "auto":
	case "required":
		s.requireTLS = true
	default:
		return nil, store.Errorf(store.EINVALID, "mail channel: starttls must be auto or required, got %q", mode)
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
	}
	if s.hostname == "" {
		s.hostname = "localhost"
	}
	s.tlsConfig = tlsConfigFor(opt.TLSConfig, s.host)
	if err := s.setAddresses(ch, u); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *mailSender) setAddresses(ch Channel, u *url.URL) error {
	from := ch.From
	if from == "" {
		from = u.Query().Get("from")
	}
	if from == "" {
		from = "ferry@" + s.host
	}
	var err error
	if s.from, err = mail.ParseAddress(from); err != nil {
		return store.Errorf(store.EINVALID, "mail channel: from address %q: %v", from, err)
	}
	if len(ch.Recipients) == 0 {
		return store.Errorf(store.EINVALID, "mail channel: no recipients")
	}
	for _, r := range ch.Recipients {
		a, err := mail.ParseAddress(r)
		if err != nil {
			return store.Errorf(store.EINVALID, "mail channel: recipient %q: %v", r, err)
		}
		s.to = append(s.to, a)
	}
	return nil
}

func tlsConfigFor(base *tls.Config, host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// Send delivers m to the channel's recipients in one SMTP conversation; see Sender.
func (s *mailSender) Send(ctx context.Context, m Message) error {
	msg, err := composeMail(s.from, s.to, m, s.now())
	if err != nil {
		return permanentf(mailPlatform, "compose mail %q: %v", m.Title(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, err := s.dial(ctx)
	if err != nil {
		return s.failure(ctx, "connect to", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	// A canceled context ends any read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return s.failure(ctx, "greet", err)
	}
	defer c.Close()
	return s.converse(ctx, c, msg)
}

func (s *mailSender) dial(ctx context.Context) (net.Conn, error) {
	d := s.addresses.dialer(s.resolver)
	if !s.implicitTLS {
		return d.DialContext(ctx, "tcp", s.addr)
	}
	td := tls.Dialer{NetDialer: d, Config: s.tlsConfig}
	return td.DialContext(ctx, "tcp", s.addr)
}

// converse runs the SMTP commands after the greeting: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA.
func (s *mailSender) converse(ctx context.Context, c *smtp.Client, msg []byte) error {
	if err := c.Hello(s.hostname); err != nil {
		return s.failure(ctx, "say hello to", err)
	}
	if err := s.startTLS(ctx, c); err != nil {
		return err
	}
	if err := s.authenticate(ctx, c); err != nil {
		return err
	}
	if err := c.Mail(s.from.Address); err != nil {
		return s.failure(ctx, fmt.Sprintf("set sender %s at", s.from.Address), err)
	}
	for _, to := range s.to {
		if err := c.Rcpt(to.Address); err != nil {
			return s.failure(ctx, fmt.Sprintf("add recipient %s at", to.Address), err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return s.failure(ctx, "start the message data at", err)
	}
	if _, err := w.Write(msg); err != nil {
		return s.failure(ctx, "send the message data to", err)
	}
	if err := w.Close(); err != nil {
		return s.failure(ctx, "finish the message data at", err)
	}
	_ = c.Quit() // the message is accepted; a failed goodbye does not undo that
	return nil
}

func (s *mailSender) startTLS(ctx context.Context, c *smtp.Client) error {
	if s.implicitTLS {
		return nil
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		if s.requireTLS {
			return permanentf(mailPlatform, "server %s does not offer STARTTLS, and the channel URL says starttls=required", s.addr)
		}
		return nil
	}
	if err := c.StartTLS(s.tlsConfig); err != nil {
		return s.failure(ctx, "start TLS with", err)
	}
	return nil
}

func (s *mailSender) authenticate(ctx context.Context, c *smtp.Client) error {
	if s.user == "" {
		return nil
	}
	_, encrypted := c.TLSConnectionState()
	if !encrypted && !isLoopback(s.host) {
		return permanentf(mailPlatform, "server %s offers no TLS; refusing to send the password unencrypted (use smtps:// or a server with STARTTLS)", s.addr)
	}
	ok, mechanisms := c.Extension("AUTH")
	if !ok {
		return permanentf(mailPlatform, "server %s does not offer AUTH, but the channel URL has a user", s.addr)
	}
	auth, err := chooseAuth(mechanisms, s.user, s.pass)
	if err != nil {
		return permanentf(mailPlatform, "server %s: %v", s.addr, err)
	}
	if err := c.Auth(auth); err != nil {
		return s.failure(ctx, fmt.Sprintf("log in as %s at", s.user), err)
	}
	return nil
}

// failure classifies an SMTP error: 4xx replies are worth another try, 5xx replies are
// permanent, network failures are worth another try, a canceled context is not.
func (s *mailSender) failure(ctx context.Context, doing string, err error) error {
	if ctx.Err() != nil {
		return &SendError{Platform: mailPlatform, Err: ctx.Err(), Reason: fmt.Sprintf("%s %s: stopped", doing, s.addr)}
	}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		e := &SendError{Platform: mailPlatform, Permanent: reply.Code >= 500,
			Reason: fmt.Sprintf("%s %s: server answered %d", doing, s.addr, reply.Code), Answer: quoteAnswer([]byte(reply.Msg))}
		if reply.Code == 535 || reply.Code == 534 {
			e.Reason = fmt.Sprintf("%s %s: the server refused the user name or password (%d)", doing, s.addr, reply.Code)
		}
		return e
	}
	var proto textproto.ProtocolError
	if errors.As(err, &proto) {
		return &SendError{Platform: mailPlatform, Permanent: true, Answer: quoteAnswer([]byte(proto.Error())),
			Reason: fmt.Sprintf("%s %s: the server does not answer as an SMTP server", doing, s.addr)}
	}
	return networkError(mailPlatform, doing, s.addr, err)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
