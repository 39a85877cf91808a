package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"time"

	"ferry/store"
)

// SendError is a failed delivery: which platform, why in its own words, and whether trying
// again may help. Its message never holds a secret: URLs in it are redacted.
type SendError struct {
	Platform   string        // "DingTalk", "WeCom", "Feishu", "webhook", "mail"
	Permanent  bool          // trying again will fail the same way (bad secret, bad URL, refused auth)
	RetryAfter time.Duration // a pause the platform asks for before the next try; 0 if none
	Reason     string        // what happened, in words; never the server's own words
	// Answer is what the server said in its own words (the start of its body, its SMTP reply
	// text, the message of a robot's error code), if anything. Whoever may set a channel URL
	// could otherwise read any address ferry reaches through it, so Public leaves it out.
	Answer string
	Err    error // the underlying error, if any
}

// Error returns the platform, the reason, the server's answer and the underlying error,
// secrets redacted: the whole story, for administrators and the server log.
func (e *SendError) Error() string {
	s := e.Platform + ": " + e.Reason
	if e.Answer != "" {
		s += ": " + e.Answer
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Public returns the error without anything the server said in its own words: the platform,
// the reason (with the HTTP status or reply code) and an underlying error made by this side
// of the connection (refused, timed out, not found). It is what a non-administrator is shown.
func (e *SendError) Public() string {
	s := e.Platform + ": " + e.Reason
	if e.Answer != "" {
		s += " (the answer's text is shown to administrators only)"
	}
	if e.Err != nil && !remoteWords(e.Err) {
		s += ": " + e.Err.Error()
	}
	return s
}

// PublicText is err as a non-administrator may read it: SendError's Public, or err's text
// for other errors (which this package makes only from its own words).
func PublicText(err error) string {
	var se *SendError
	if errors.As(err, &se) {
		return se.Public()
	}
	return err.Error()
}

// remoteWords reports an error whose text quotes the server: a line that is not SMTP, or the
// names in a certificate.
func remoteWords(err error) bool {
	var proto textproto.ProtocolError
	var reply *textproto.Error
	var hostnameErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	return errors.As(err, &proto) || errors.As(err, &reply) || errors.As(err, &hostnameErr) || errors.As(err, &certErr)
}

// Unwrap returns the underlying error.
func (e *SendError) Unwrap() error { return e.Err }

func permanentf(platform, format string, args ...any) *SendError {
	return &SendError{Platform: platform, Permanent: true, Reason: fmt.Sprintf(format, args...)}
}

func retryablef(platform string, after time.Duration, format string, args ...any) *SendError {
	return &SendError{Platform: platform, RetryAfter: after, Reason: fmt.Sprintf(format, args...)}
}

// Retryable reports whether sending again later may succeed. It is false for nil, for a
// canceled context and for a SendError marked permanent; true for other SendErrors (rate
// limits, server errors, network failures) and for errors this package did not classify.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || store.ErrorCode(err) == store.EINVALID {
		return false // a channel that cannot be used as configured stays so until changed
	}
	var se *SendError
	if errors.As(err, &se) {
		return !se.Permanent
	}
	return true
}

// SuggestedWait returns the pause the platform asked for before the next try (for example a
// minute after DingTalk's "send too fast"), or 0 when it asked for none.
func SuggestedWait(err error) time.Duration {
	var se *SendError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// networkError classifies an error from dialing or talking to a server: an unknown host or a
// certificate that does not verify is permanent, anything else (refused, reset, timeout) is
// worth another try. target is shown in the message and must already be redacted.
func networkError(platform, doing, target string, err error) *SendError {
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return &SendError{Platform: platform, Permanent: true, Err: err,
			Reason: fmt.Sprintf("%s %s: host %q not found", doing, target, dnsErr.Name)}
	case errors.Is(err, errRefusedAddress):
		return &SendError{Platform: platform, Permanent: true, Err: err, Reason: fmt.Sprintf("%s %s", doing, target)}
	case errors.Is(err, errForeignRedirect):
		return &SendError{Platform: platform, Permanent: true, Err: err, Reason: fmt.Sprintf("%s %s", doing, target)}
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostnameErr):
		return &SendError{Platform: platform, Permanent: true, Err: err,
			Reason: fmt.Sprintf("%s %s: the server's TLS certificate is not trusted", doing, target)}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &SendError{Platform: platform, Err: err, Reason: fmt.Sprintf("%s %s: the server closed the connection", doing, target)}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &SendError{Platform: platform, Err: err, Reason: fmt.Sprintf("%s %s: timed out", doing, target)}
	default:
		return &SendError{Platform: platform, Err: err, Reason: fmt.Sprintf("%s %s", doing, target)}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RedactURL returns raw fit for error messages and logs: the password of the user info, every
// query value (access_token, key, …) and every path segment that looks like a token (20 or
// more letters, digits, '-' or '_', as in Feishu's /hook/<token>) are replaced by "****".
// Text that is not a URL is replaced whole. It is the masking the API shows channel URLs with.
func RedactURL(raw string) string { return store.ShownURL(raw) }

// redactURLError rewrites the URL inside an *url.Error (what net/http returns) so that the
// error text holds no token.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: ue.Err}
	}
	return err
}
