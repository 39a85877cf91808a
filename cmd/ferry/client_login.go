package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/term"

	"ferry/store"
)

// loginCommand checks a token (or logs in with a user name and password and makes a token)
// and stores the URL and the token for the other commands.
func loginCommand(ctx context.Context, args []string, std streams) error {
	const usage = "ferry login URL [--user NAME]   (the token, or with --user the password, is read from the terminal or stdin)"
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	user := fs.String("user", "", "log in with this user name and a password instead of a token")
	pos, err := parseArgs(fs, args, 1, 1, usage)
	if err != nil {
		return err
	}
	base := strings.TrimRight(pos[0], "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("login %q: want the URL of ferry, such as https://ferry.example.com", pos[0])
	}
	in := bufio.NewReader(std.stdin)
	var token string
	if *user == "" {
		token, err = ask(std, in, "API token (make one on your ferry's Tokens page): ", true)
		if err != nil {
			return err
		}
		if token == "" {
			return usagef("no token given; to log in with a password instead, use --user NAME")
		}
	} else {
		password, err := ask(std, in, "Password of "+*user+": ", true)
		if err != nil {
			return err
		}
		if token, err = tokenWithPassword(ctx, base, *user, password); err != nil {
			return err
		}
	}
	c := newAPIClient(clientConfig{URL: base, Token: token})
	var me store.User
	if err := c.call(ctx, "GET", "/user", nil, &me); err != nil {
		return err
	}
	path, err := saveClientConfig(clientConfig{URL: base, Token: token})
	if err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "logged in to %s as %s; saved in %s\n", base, me.Name, path)
	return nil
}

// ask reads one line: from the terminal without echo when secret, or from stdin as it is.
func ask(std streams, in *bufio.Reader, prompt string, secret bool) (string, error) {
	if f, ok := std.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(std.stderr, prompt)
		if secret {
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(std.stderr)
			return strings.TrimSpace(string(b)), err
		}
	}
	line, err := in.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(prompt, ": "), err)
	}
	return strings.TrimSpace(line), nil
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// tokenWithPassword logs in through the login form as a browser does, makes an API token
// named after this machine, and logs the browser session out again. The API has no password
// login of its own: tokens are what scripts hold.
func tokenWithPassword(ctx context.Context, base, user, password string) (string, error) {
	jar, _ := cookiejar.New(nil)
	web := &http.Client{Jar: jar, Timeout: time.Minute}
	page, err := getPage(ctx, web, base+"/login")
	if err != nil {
		return "", err
	}
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("%s/login does not look like ferry's login page", base)
	}
	form := url.Values{"name": {user}, "password": {password}, "csrf_token": {m[1]}, "next": {"/"}}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := web.Do(req)
	if err != nil {
		return "", fmt.Errorf("reach ferry at %s: %w", base, unwrapURLError(err))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path == "/login" {
		return "", fmt.Errorf("log in as %s: %s", user, loginFormError(resp.StatusCode, string(body)))
	}
	m = csrfInput.FindStringSubmatch(string(body))
	if m == nil {
		return "", errors.New("logged in, but the page after login holds no form token")
	}
	host, _ := os.Hostname()
	var tok struct {
		Token string `json:"token"`
	}
	name, _ := json.Marshal(map[string]string{"name": clip("ferry CLI on "+host, 60)})
	if err := sessionCall(ctx, web, base, m[1], "POST", "/api/v1/user/tokens", string(name), &tok); err != nil {
		return "", err
	}
	_ = sessionCall(ctx, web, base, m[1], "POST", "/logout", "", nil)
	return tok.Token, nil
}

func getPage(ctx context.Context, web *http.Client, u string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := web.Do(req)
	if err != nil {
		return "", fmt.Errorf("reach ferry at %s: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// sessionCall makes a request with the browser session and its CSRF token.
func sessionCall(ctx context.Context, web *http.Client, base, csrf, method, path, body string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	req.Header.Set("X-CSRF-Token", csrf)
	req.Header.Set("Content-Type", "application/json")
	resp, err := web.Do(req)
	if err != nil {
		return fmt.Errorf("reach ferry at %s: %w", base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return answerError(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

var formError = regexp.MustCompile(`(?s)class="[^"]*error[^"]*"[^>]*>\s*([^<]+?)\s*<`)

// loginFormError finds the login form's message ("Wrong user name or password.").
func loginFormError(status int, page string) string {
	if m := formError.FindStringSubmatch(page); m != nil {
		return oneLine(html.UnescapeString(m[1]))
	}
	return fmt.Sprintf("the login form answered %d %s", status, http.StatusText(status))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
