package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

const (
	defaultHTTPTimeout = 10 * time.Second
	maxAnswerBytes     = 64 << 10 // a robot's answer is a few bytes; more is read no further
	maxRedirects       = 3
	maxReasonBytes     = 300 // of a server's answer quoted in an error
)

// errForeignRedirect is a redirect ferry will not follow: it would send the message, and
// perhaps a token in the URL, to a host nobody configured.
var errForeignRedirect = errors.New("refused to follow a redirect to another host")

// newHTTPClient returns a client with a per-request timeout that follows redirects only to
// the host it started on.
func newHTTPClient(opt Options) *http.Client {
	transport := opt.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The proxy settings are read now, not once per process as http.ProxyFromEnvironment
		// does, so the proxies the dialer lets through are the ones requests use.
		proxy := httpproxy.FromEnvironment().ProxyFunc()
		t.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
		t.DialContext = opt.Addresses.proxyAwareDial(opt.Resolver, envProxies())
		transport = t
	}
	return &http.Client{
		Transport: transport,
		Timeout:   opt.timeout(defaultHTTPTimeout),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Host != via[0].URL.Host {
				return fmt.Errorf("%w (%s)", errForeignRedirect, req.URL.Host)
			}
			return nil
		},
	}
}

// encodeJSON encodes v without HTML escaping, so that "<" in a log stays one byte.
func encodeJSON(platform string, v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, permanentf(platform, "encode message: %v", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// answer is what a server said: its status, a bounded part of its body, and its Retry-After.
type answer struct {
	Status     int
	Body       []byte
	RetryAfter time.Duration
}

// postJSON posts body to target and reads at most maxAnswerBytes of the answer. A failure to
// reach the server is returned as a *SendError whose text holds target only redacted.
func postJSON(ctx context.Context, client *http.Client, platform, target string, body []byte, header http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return answer{}, permanentf(platform, "build request to %s: %v", RedactURL(target), redactURLError(err))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "ferry-notify")
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, networkError(platform, "POST to", RedactURL(target), redactURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return answer{}, networkError(platform, "read the answer of", RedactURL(target), redactURLError(err))
	}
	return answer{Status: resp.StatusCode, Body: data, RetryAfter: retryAfter(resp.Header)}, nil
}

// statusError turns a non-2xx answer into a *SendError: 408, 429 and 5xx are worth another
// try, other statuses are permanent. It returns nil for 2xx.
func statusError(platform string, a answer) *SendError {
	if a.Status >= 200 && a.Status < 300 {
		return nil
	}
	reason := fmt.Sprintf("answered HTTP %d %s", a.Status, http.StatusText(a.Status))
	e := &SendError{Platform: platform, Reason: reason, Answer: quoteAnswer(a.Body), RetryAfter: a.RetryAfter}
	e.Permanent = a.Status < 500 && a.Status != http.StatusRequestTimeout && a.Status != http.StatusTooManyRequests
	return e
}

// quoteAnswer returns the start of a server's answer on one line, for an error message.
func quoteAnswer(body []byte) string {
	text := oneLine(string(body))
	if len(text) > maxReasonBytes {
		text = runePrefix(text, maxReasonBytes) + "…"
	}
	return text
}

func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return min(time.Duration(secs)*time.Second, BackoffCap)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), BackoffCap)
	}
	return 0
}
