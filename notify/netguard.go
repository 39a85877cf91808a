package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"

	"ferry/store"
)

// AddressPolicy says which addresses notification channels may reach. Whoever may set a
// channel URL makes ferry connect there, so by default the addresses that reach ferry's own
// machine or its cloud provider are refused (see refusedNets); private networks (10/8,
// 172.16/12, 192.168/16, fc00::/7) are allowed, since a company's chat proxy or mail relay
// often lives there. The zero value is the default.
type AddressPolicy struct {
	// Allowed are networks channels may reach although refusedNets holds them, for example
	// 127.0.0.1/32 for a mail relay on ferry's machine (FERRY_CHANNEL_ALLOWED_NETS).
	Allowed []netip.Prefix
}

// refusedNets are refused unless allowed: this machine, link-local (where cloud metadata
// lives), unspecified, multicast and broadcast addresses, and the cloud metadata addresses
// outside those ranges.
var refusedNets = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address (this machine)"},
	{netip.MustParsePrefix("::1/128"), "a loopback address (this machine)"},
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address (this machine)"},
	{netip.MustParsePrefix("::/128"), "an unspecified address (this machine)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (cloud metadata lives at 169.254.169.254)"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the Alibaba Cloud metadata address"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "the AWS metadata address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
}

// refusedNames are host names that mean this machine or a metadata service whatever DNS says.
var refusedNames = []string{"localhost", "metadata.google.internal", "metadata.goog"}

// ParseAllowedNets parses a comma- or space-separated list of CIDRs and IP addresses (an
// address alone is a network of one), for AddressPolicy.Allowed. The error names the entry.
func ParseAllowedNets(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network such as 127.0.0.0/8 nor an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// checkAddr returns an error saying why ip is refused, or nil.
func (p AddressPolicy) checkAddr(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	for _, a := range p.Allowed {
		if a.Contains(ip) {
			return nil
		}
	}
	for _, r := range refusedNets {
		if r.prefix.Contains(ip) {
			return fmt.Errorf("%s is %s; channels may not reach it unless FERRY_CHANNEL_ALLOWED_NETS allows it", ip, r.what)
		}
	}
	return nil
}

// checkHost checks a host name or literal address as written in a URL, without resolving it.
func (p AddressPolicy) checkHost(host string) error {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return p.checkAddr(ip)
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, n := range refusedNames {
		if name == n || strings.HasSuffix(name, "."+n) {
			if n == "localhost" && p.allowsLoopback() {
				return nil
			}
			return fmt.Errorf("%s names this machine or a cloud metadata service; channels may not reach it unless FERRY_CHANNEL_ALLOWED_NETS allows it", host)
		}
	}
	return nil
}

func (p AddressPolicy) allowsLoopback() bool {
	return p.checkAddr(netip.MustParseAddr("127.0.0.1")) == nil && p.checkAddr(netip.IPv6Loopback()) == nil
}

// CheckURL checks the host of a channel URL (http(s), smtp or smtps) as written, without
// resolving it: a literal refused address or a name such as localhost is refused with a
// store.EINVALID error naming the url field. Names are checked again on each connection,
// on the address actually dialed.
func (p AddressPolicy) CheckURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Hostname() == "" {
		return nil // the channel's own validation says what is wrong with it
	}
	if err := p.checkHost(u.Hostname()); err != nil {
		return store.Errorf(store.EINVALID, "url: %v", err)
	}
	return nil
}

// errRefusedAddress marks a connection the policy refused.
var errRefusedAddress = errors.New("refused address")

// control is a net.Dialer Control function: it runs after the name was resolved, on the
// address about to be dialed, so a name that resolves (or later rebinds) to a refused address
// is refused too.
func (p AddressPolicy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", errRefusedAddress, address)
	}
	if err := p.checkAddr(ap.Addr()); err != nil {
		return fmt.Errorf("%w: %v", errRefusedAddress, err)
	}
	return nil
}

// proxyAwareDial returns a DialContext that connects only where the policy allows, except to
// the proxies the administrator configured (addresses as host:port): with HTTPS_PROXY set,
// ferry connects to the proxy, which may well be on this machine, and the proxy decides where
// the request goes. Requests to loopback addresses are never proxied (net/http's rule), so
// they still meet the policy.
func (p AddressPolicy) proxyAwareDial(r *net.Resolver, proxies map[string]bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := p.dialer(r)
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: r}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxies[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// envProxies returns the host:port of the HTTP and HTTPS proxies set in the environment, as
// net/http dials them.
func envProxies() map[string]bool {
	cfg := httpproxy.FromEnvironment()
	out := map[string]bool{}
	for _, raw := range []string{cfg.HTTPProxy, cfg.HTTPSProxy} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			if u, err = url.Parse("http://" + raw); err != nil {
				continue
			}
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
		}
		if port == "" {
			port = "80"
		}
		out[net.JoinHostPort(u.Hostname(), port)] = true
	}
	return out
}

// dialer returns a dialer that connects only where the policy allows, resolving names with r
// (nil: the system's resolver).
func (p AddressPolicy) dialer(r *net.Resolver) *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control, Resolver: r}
}
