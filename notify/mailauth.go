package notify

import (
	"errors"
	"fmt"
	"net/smtp"
	"strings"
)

// chooseAuth picks AUTH PLAIN, else LOGIN, from the mechanisms a server offers.
func chooseAuth(offered, user, pass string) (smtp.Auth, error) {
	mechs := strings.Fields(strings.ToUpper(offered))
	has := func(name string) bool {
		for _, m := range mechs {
			if m == name {
				return true
			}
		}
		return false
	}
	switch {
	case has("PLAIN"):
		return plainAuth{user: user, pass: pass}, nil
	case has("LOGIN"):
		return &loginAuth{user: user, pass: pass}, nil
	default:
		return nil, fmt.Errorf("offers AUTH %s, but ferry speaks only PLAIN and LOGIN", offered)
	}
}

// plainAuth is AUTH PLAIN (RFC 4616). Unlike smtp.PlainAuth it leaves the decision about
// unencrypted connections to the caller, which refuses them except to loopback hosts.
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected challenge after AUTH PLAIN")
	}
	return nil, nil
}

// loginAuth is the AUTH LOGIN exchange: the server asks for "Username:" then "Password:".
type loginAuth struct {
	user, pass string
	step       int
}

func (a *loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	prompt := strings.ToLower(string(challenge))
	switch {
	case strings.HasPrefix(prompt, "user"), a.step == 1 && !strings.HasPrefix(prompt, "pass"):
		return []byte(a.user), nil
	case strings.HasPrefix(prompt, "pass"), a.step == 2:
		return []byte(a.pass), nil
	default:
		return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", challenge)
	}
}
