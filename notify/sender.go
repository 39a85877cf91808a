package notify

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"ferry/store"
)

// Sender delivers one message to one channel. Send returns a *SendError (see Retryable and
// SuggestedWait) when the message was not delivered.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Channel kinds.
const (
	KindMail     = "mail"
	KindDingTalk = "dingtalk"
	KindWeCom    = "wecom"
	KindFeishu   = "feishu"
	KindWebhook  = "webhook"
)

// Channel is where notices go, as configured in ferry.
type Channel struct {
	Kind string
	// URL is the robot or webhook URL, or for mail smtp://user:pass@host:port (STARTTLS when
	// offered; ?starttls=required to insist) or smtps://user:pass@host:port (implicit TLS).
	URL string
	// Secret signs requests: DingTalk and Feishu signatures, the webhook's X-Ferry-Signature.
	Secret string
	// Recipients are the mail addresses a mail channel sends to.
	Recipients []string
	// Keyword is a word DingTalk or Feishu robots require in every message ("custom keywords"
	// security setting); it is added when the text lacks it.
	Keyword string
	// From is the mail sender address; default: the URL's ?from=, else ferry@<smtp host>.
	From string
	// Format picks the message shape: DingTalk "markdown" (default) or "actionCard"; Feishu
	// "interactive" (default, a card with a button), "post" or "text".
	Format string
}

// Options are settings of the running program rather than of a channel.
type Options struct {
	// Timeout bounds each request (for mail: the whole SMTP conversation). Default 10 s for
	// HTTP, 60 s for mail.
	Timeout time.Duration
	// TLSConfig is used for SMTP (STARTTLS and smtps); nil means the system roots.
	TLSConfig *tls.Config
	// Transport carries HTTP requests; nil means a clone of http.DefaultTransport that dials
	// only where Addresses allows. A Transport given here must keep that rule itself.
	Transport http.RoundTripper
	// Addresses says where channels may connect (HTTP and SMTP); the zero value refuses this
	// machine, link-local and cloud metadata addresses.
	Addresses AddressPolicy
	// Resolver looks up channel host names; nil means the system's.
	Resolver *net.Resolver
	// Now is the clock for signatures and mail dates; nil means time.Now.
	Now func() time.Time
	// Hostname is this machine's name, for SMTP EHLO and Message-ID; default "localhost".
	Hostname string
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) timeout(fallback time.Duration) time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return fallback
}

// New returns the Sender for ch. It fails with a store.EINVALID error naming the field when
// the channel's kind, URL or recipients are wrong.
func New(ch Channel, opt Options) (Sender, error) {
	if err := opt.Addresses.CheckURL(ch.URL); err != nil {
		return nil, err
	}
	switch ch.Kind {
	case KindMail:
		return newMailSender(ch, opt)
	case KindDingTalk:
		return newDingTalk(ch, opt)
	case KindWeCom:
		return newWeCom(ch, opt)
	case KindFeishu:
		return newFeishu(ch, opt)
	case KindWebhook:
		return newWebhook(ch, opt)
	default:
		return nil, store.Errorf(store.EINVALID, "unknown channel kind %q (want mail, dingtalk, wecom, feishu or webhook)", ch.Kind)
	}
}

// checkHTTPURL parses a robot or webhook URL; the error never shows the URL's token.
func checkHTTPURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, store.Errorf(store.EINVALID, "%s channel: url must be an http(s) URL with a host, got %s", kind, RedactURL(raw))
	}
	return u, nil
}
