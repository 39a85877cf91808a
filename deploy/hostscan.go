package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// errGotHostKey ends a scan's handshake once the host has shown its key.
var errGotHostKey = errors.New("got the host key")

// ScanHostKey connects to address:port and returns the SSH host key the server offers, as an
// authorized_keys line, without logging in (like ssh-keyscan). It prefers ed25519 keys. Its
// errors say whether the host could not be reached or is not an SSH server.
func ScanHostKey(ctx context.Context, address string, port int) (string, error) {
	t := Target{Address: address, Port: port}
	opts := DialOptions{}.withDefaults()
	raw, err := (&net.Dialer{Timeout: opts.ConnectTimeout}).DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return "", reachError(t, opts, err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(opts.HandshakeTimeout))
	var line string
	config := &ssh.ClientConfig{
		User: "ferry-keyscan",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			return errGotHostKey
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
			ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		Timeout: opts.HandshakeTimeout,
	}
	_, _, _, err = ssh.NewClientConn(raw, t.Addr(), config)
	if line != "" {
		return line, nil
	}
	if err == nil {
		err = errors.New("the server showed no host key")
	}
	return "", fmt.Errorf("fetch the host key of %s: %w", t.Addr(), handshakeError(ctx, t, opts, err))
}
