package deploy

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// ConnPool keeps SSH connections open between deployments, so the next deployment to a host
// (a rollback a minute later, the next environment's rollout) skips the handshake. A connection
// is reused only for the same address, user, private key and pinned host key; one that no
// longer answers a keepalive is closed and a new one dialed. Idle connections are closed after
// IdleTimeout. The zero value is not usable: use NewConnPool.
type ConnPool struct {
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[poolKey][]*pooledConn
	closed bool
}

type poolKey struct {
	addr, user, hostKey string
	key                 [32]byte // sha256 of the private key
}

type pooledConn struct {
	conn  *Conn
	timer *time.Timer
}

// NewConnPool returns a pool that closes connections idle for idleTimeout (default 2 minutes).
func NewConnPool(idleTimeout time.Duration) *ConnPool {
	if idleTimeout <= 0 {
		idleTimeout = 2 * time.Minute
	}
	return &ConnPool{idleTimeout: idleTimeout, idle: map[poolKey][]*pooledConn{}}
}

func keyOf(t Target) poolKey {
	return poolKey{addr: t.Addr(), user: t.User, hostKey: t.HostKey, key: sha256.Sum256(t.PrivateKey)}
}

// Get returns an idle connection to t that still answers, or dials a new one with opts. A
// target without a pinned host key is always dialed, so opts.OnNewHostKey sees its key.
func (p *ConnPool) Get(ctx context.Context, t Target, opts DialOptions) (*Conn, error) {
	if t.HostKey != "" {
		for {
			c := p.take(keyOf(t))
			if c == nil {
				break
			}
			if c.alive() {
				return c, nil
			}
			c.Close()
		}
	}
	return Dial(ctx, t, opts)
}

func (p *ConnPool) take(k poolKey) *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[k]
	if len(list) == 0 {
		return nil
	}
	pc := list[len(list)-1]
	p.idle[k] = list[:len(list)-1]
	pc.timer.Stop()
	return pc.conn
}

// Put hands c back for a later Get; a closed connection, or one to a target without a pinned
// host key, is closed instead.
func (p *ConnPool) Put(c *Conn) {
	if c.target.HostKey == "" || !c.open() {
		c.Close()
		return
	}
	k := keyOf(c.target)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return
	}
	pc := &pooledConn{conn: c}
	pc.timer = time.AfterFunc(p.idleTimeout, func() { p.expire(k, pc) })
	p.idle[k] = append(p.idle[k], pc)
}

func (p *ConnPool) expire(k poolKey, pc *pooledConn) {
	p.mu.Lock()
	list := p.idle[k]
	for i, x := range list {
		if x == pc {
			p.idle[k] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	pc.conn.Close()
}

// Close closes every idle connection; later Puts close theirs.
func (p *ConnPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, list := range p.idle {
		for _, pc := range list {
			pc.timer.Stop()
			pc.conn.Close()
		}
		delete(p.idle, k)
	}
}

// open reports whether Close was not called and the transport did not end.
func (c *Conn) open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// alive asks the host for a keepalive answer, within 5 seconds.
func (c *Conn) alive() bool {
	if !c.open() {
		return false
	}
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err == nil
	case <-time.After(5 * time.Second):
		return false
	}
}
