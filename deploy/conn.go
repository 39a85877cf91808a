// Package deploy puts a version on hosts over SSH/SFTP: it uploads the artifact once per host,
// switches the host's current release atomically, restarts the service gracefully, checks its
// health and switches back when the new release does not come up. Strategies decide in which
// order and how many hosts at a time a rollout reaches.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Target is one SSH endpoint to deploy to.
type Target struct {
	// Name is how people know the host ("web-1"); it appears in every error.
	Name string
	// Address is the host name or IP address; Port defaults to 22.
	Address string
	Port    int
	// User is the account commands run as.
	User string
	// PrivateKey is the PEM-encoded private key that logs in as User.
	PrivateKey []byte
	// HostKey is the pinned host key as an authorized_keys line ("ssh-ed25519 AAAA…"). Empty
	// means trust on first use: the key offered is accepted and handed to OnNewHostKey.
	HostKey string
}

// Addr returns address:port of t.
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(port))
}

func (t Target) label() string {
	if t.Name == "" {
		return t.Addr()
	}
	return fmt.Sprintf("%s (%s)", t.Name, t.Addr())
}

// DialOptions tune how Dial connects. The zero value gives sensible defaults.
type DialOptions struct {
	// ConnectTimeout bounds the TCP connect; default 10s.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the SSH handshake and login; default 15s.
	HandshakeTimeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests; default 15s. A request that
	// is not answered within the interval closes the connection.
	KeepAlive time.Duration
	// OnNewHostKey is called with the host key (authorized_keys line) of a target without a
	// pinned key, so the caller can record it. An error refuses the connection.
	OnNewHostKey func(authorizedKeyLine string) error
}

func (o DialOptions) withDefaults() DialOptions {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 15 * time.Second
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	return o
}

// Conn is one SSH connection to a host, shared by every step of a deployment there: commands,
// SFTP and the health-check tunnel. It is safe for concurrent use.
type Conn struct {
	target Target
	client *ssh.Client
	done   chan struct{}

	sftpOnce sync.Once
	sftp     *sftp.Client
	sftpErr  error

	closeOnce sync.Once
}

// Dial connects and logs in to t, verifying its host key. Its errors say in words what went
// wrong: the host cannot be reached, the key is not accepted, the host key changed.
func Dial(ctx context.Context, t Target, opts DialOptions) (*Conn, error) {
	opts = opts.withDefaults()
	config, err := clientConfig(t, opts)
	if err != nil {
		return nil, err
	}
	dialer := net.Dialer{Timeout: opts.ConnectTimeout}
	raw, err := dialer.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, reachError(t, opts, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(opts.HandshakeTimeout))
	sshConn, chans, reqs, err := ssh.NewClientConn(raw, t.Addr(), config)
	if err != nil {
		raw.Close()
		return nil, handshakeError(ctx, t, opts, err)
	}
	raw.SetDeadline(time.Time{})
	c := &Conn{target: t, client: ssh.NewClient(sshConn, chans, reqs), done: make(chan struct{})}
	go c.keepAlive(opts.KeepAlive)
	return c, nil
}

func clientConfig(t Target, opts DialOptions) (*ssh.ClientConfig, error) {
	signer, err := ssh.ParsePrivateKey(t.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("read the private key of %s: %w", t.label(), err)
	}
	config := &ssh.ClientConfig{
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeyCallback(t, opts.OnNewHostKey),
		Timeout:         opts.HandshakeTimeout,
	}
	config.Ciphers = ciphers
	if t.HostKey != "" {
		pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
		if err != nil {
			return nil, fmt.Errorf("read the pinned host key of %s: %w", t.label(), err)
		}
		config.HostKeyAlgorithms = algorithmsFor(pinned.Type())
	}
	return config, nil
}

// ciphers is ferry's preference for the connection's cipher, the first the host also offers:
// AES-GCM first, which the CPU's AES instructions make the cheapest per byte on both ends
// (OpenSSH's own client prefers chacha20-poly1305, which costs the host's sshd about a fifth
// more CPU for an upload), then the others x/crypto/ssh holds safe.
var ciphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}

// algorithmsFor asks the server for the kind of key that is pinned, so a server holding
// several host keys does not offer another kind and look changed.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// HostKeyChangedError says the host offered a key other than the pinned one.
type HostKeyChangedError struct {
	Host     string
	Expected string // SHA256 fingerprint of the pinned key
	Got      string // SHA256 fingerprint of the offered key
	// Key is the offered key as an authorized_keys line, for an administrator to re-pin.
	Key string
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key of %s changed: expected %s, got %s — if the host was reinstalled, compare both on the hosts page and re-pin its key",
		e.Host, e.Expected, e.Got)
}

// HostKeyRefusedError refuses the key a host without a pinned key offered, when the caller
// may not trust it on first use (OnNewHostKey returned it). Reason says what to do.
type HostKeyRefusedError struct {
	Reason string
}

func (e *HostKeyRefusedError) Error() string { return e.Reason }

func hostKeyCallback(t Target, onNew func(string) error) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if t.HostKey == "" {
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			if onNew == nil {
				return nil
			}
			var refused *HostKeyRefusedError
			if err := onNew(line); errors.As(err, &refused) {
				return refused
			} else if err != nil {
				return fmt.Errorf("record the host key of %s: %w", t.label(), err)
			}
			return nil
		}
		pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
		if err != nil {
			return fmt.Errorf("read the pinned host key of %s: %w", t.label(), err)
		}
		if pinned.Type() != key.Type() || string(pinned.Marshal()) != string(key.Marshal()) {
			return &HostKeyChangedError{Host: t.label(), Expected: ssh.FingerprintSHA256(pinned), Got: ssh.FingerprintSHA256(key),
				Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))}
		}
		return nil
	}
}

func reachError(t Target, opts DialOptions, err error) error {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach %s: connection refused — is sshd running and the port right?", t.label())
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("connect to %s: canceled: %w", t.label(), err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("cannot reach %s: no answer within %s", t.label(), opts.ConnectTimeout)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("cannot reach %s: no route to the host", t.label())
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("cannot reach %s: the name %q does not resolve", t.label(), t.Address)
	}
	return fmt.Errorf("cannot reach %s: %w", t.label(), err)
}

func handshakeError(ctx context.Context, t Target, opts DialOptions, err error) error {
	var changed *HostKeyChangedError
	var refused *HostKeyRefusedError
	var netErr net.Error
	switch {
	case errors.As(err, &changed):
		return changed
	case errors.As(err, &refused):
		return refused
	case ctx.Err() != nil:
		return fmt.Errorf("connect to %s: canceled: %w", t.label(), ctx.Err())
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("ssh authentication failed for %s@%s: the key is not accepted", t.User, t.label())
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("ssh handshake with %s: no answer within %s — is it an SSH server?", t.label(), opts.HandshakeTimeout)
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF"):
		return fmt.Errorf("ssh handshake with %s: the server closed the connection (%v)", t.label(), err)
	}
	return fmt.Errorf("ssh handshake with %s: %w", t.label(), err)
}

// keepAlive sends keepalive@openssh.com requests and closes the connection when one fails or
// is not answered in time, so a dead host fails the current step instead of hanging it.
func (c *Conn) keepAlive(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				c.Close()
				return
			}
		case <-time.After(every):
			c.Close()
			return
		case <-c.done:
			return
		}
	}
}

// Target returns the target c is connected to.
func (c *Conn) Target() Target { return c.target }

// Close ends the connection and everything running on it.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		// Once.Do waits for an sftp start in progress and stops a later one.
		c.sftpOnce.Do(func() { c.sftpErr = fmt.Errorf("start sftp on %s: the connection is closed", c.target.label()) })
		if c.sftp != nil {
			c.sftp.Close()
		}
		err = c.client.Close()
	})
	return err
}

// Dial opens a TCP connection from the host, as if made there: "127.0.0.1:8080" is the host's
// own loopback. It fails when the connection is closed or the host refuses.
func (c *Conn) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s from %s: %w", addr, c.target.label(), err)
	}
	return conn, nil
}

// SFTP returns the connection's SFTP client, opened on first use.
func (c *Conn) SFTP() (*sftp.Client, error) {
	c.sftpOnce.Do(func() {
		c.sftp, c.sftpErr = sftp.NewClient(c.client,
			sftp.UseConcurrentWrites(true),
			sftp.MaxPacketUnchecked(sftpPacket),
			sftp.MaxConcurrentRequestsPerFile(64))
		if c.sftpErr != nil {
			c.sftpErr = fmt.Errorf("start sftp on %s: %w", c.target.label(), c.sftpErr)
		}
	})
	return c.sftp, c.sftpErr
}

// sftpPacket is the write size per SFTP request; OpenSSH's sftp-server takes up to 256 KiB
// messages, so 128 KiB of data leaves room for the header.
const sftpPacket = 128 * 1024
