package main

// The client side of the ferry binary: commands that talk to a ferry server's API, for people
// at a terminal and for CI scripts. See docs/cli.md.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
)

// usageError is a command used wrongly: ferry exits 2 with the message.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// apiError is the API's answer to a request that failed, with its message in words.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// clientConfig is what `ferry login` stores: the server and the API token.
type clientConfig struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

// clientConfigPath is the file ferry login writes: <user config dir>/ferry/config.json.
func clientConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config directory: %w", err)
	}
	return filepath.Join(dir, "ferry", "config.json"), nil
}

// loadClientConfig reads the stored login; FERRY_URL and FERRY_TOKEN override it (for CI).
func loadClientConfig(env func(string) string) (clientConfig, error) {
	var cfg clientConfig
	path, err := clientConfigPath()
	if err == nil {
		raw, rerr := os.ReadFile(path)
		switch {
		case rerr == nil:
			if jerr := json.Unmarshal(raw, &cfg); jerr != nil {
				return cfg, fmt.Errorf("%s: %v; run ferry login again", path, jerr)
			}
		case !errors.Is(rerr, os.ErrNotExist):
			return cfg, fmt.Errorf("read %s: %w", path, rerr)
		}
	}
	if v := strings.TrimRight(env("FERRY_URL"), "/"); v != "" && v != strings.TrimRight(cfg.URL, "/") {
		// The stored token belongs to the stored server: never send it to another one.
		cfg.URL, cfg.Token = v, ""
	}
	if v := env("FERRY_TOKEN"); v != "" {
		cfg.Token = v
	}
	if cfg.URL == "" || cfg.Token == "" {
		return cfg, fmt.Errorf("not logged in to %s: run ferry login URL, or set FERRY_URL and FERRY_TOKEN", orNone(cfg.URL))
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	return cfg, nil
}

// saveClientConfig writes the login readable by the user alone (0600 in a 0700 directory).
func saveClientConfig(cfg clientConfig) (string, error) {
	path, err := clientConfigPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	// WriteFile keeps the mode of a file that exists; make sure.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// apiClient calls a ferry server's JSON API with a token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient(cfg clientConfig) *apiClient {
	return &apiClient{base: cfg.URL, token: cfg.Token, http: &http.Client{Timeout: time.Minute}}
}

// call sends body (JSON, when not nil) and decodes a 2xx answer into out (when not nil; a
// *json.RawMessage keeps the answer as it came). A failed request returns an *apiError.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, rd)
	if err != nil {
		return fmt.Errorf("FERRY_URL %q: %w", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach ferry at %s: %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp.StatusCode, raw)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if rm, ok := out.(*json.RawMessage); ok {
		*rm = raw
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the answer of %s %s is not what ferry sends: %v", method, path, err)
	}
	return nil
}

// answerError turns a failed answer into one line: the API's own message when it sent one.
func answerError(status int, raw []byte) error {
	var body struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		msg = body.Error
	} else {
		msg = fmt.Sprintf("ferry answered %d %s", status, http.StatusText(status))
	}
	if status == http.StatusUnauthorized {
		msg += " (run ferry login, or check FERRY_TOKEN)"
	}
	return &apiError{Status: status, Message: oneLine(msg)}
}

// unwrapURLError drops the "Get \"http://…\":" that net/http puts before a connection error.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// oneLine folds a message onto one line, so scripts can read an error with one read.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// pathEscape escapes a name for use as one path segment.
func pathEscape(s string) string { return url.PathEscape(s) }

// isTerminal reports whether f is a terminal (a *os.File that is a tty).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// parseArgs parses flags that may come before, between or after the positional arguments
// (ferry deploy orders prod --latest), and checks the count of positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, min, max int, usage string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usagef("usage: %s", usage)
			}
			return nil, usagef("%v; usage: %s", err, usage)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, usagef("usage: %s", usage)
	}
	return pos, nil
}

func orNone(url string) string {
	if url == "" {
		return "any server"
	}
	return url
}
