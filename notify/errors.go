package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
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
	Reason     string        // what happened, in words
	Err        error         // the underlying error, if any
}

// Error returns the platform, the reason and the underlying error, secrets redacted.
func (e *SendError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Platform, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Platform, e.Reason)
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
	if err == nil || errors.Is(err, context.Canceled) {
		return false
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
