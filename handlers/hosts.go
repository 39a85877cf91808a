package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/ssh"

	"ferry/store"
)

func (s *Server) registerHosts(r gin.IRouter) {
	r.GET("/hosts", s.need(loggedIn), s.listHosts)
	r.POST("/hosts", s.need(adminOnly), s.createHost)
	r.GET("/hosts/:host", s.need(loggedIn), s.getHost)
	r.PATCH("/hosts/:host", s.need(adminOnly), s.updateHost)
	r.DELETE("/hosts/:host", s.need(adminOnly), s.deleteHost)
	r.POST("/hosts/:host/accept-key", s.need(adminOnly), s.acceptHostKey)
	r.POST("/hosts/:host/scan-key", s.need(adminOnly), s.scanHostKey)
	r.POST("/hosts/:host/repin-key", s.need(adminOnly), s.repinHostKey)
}

// hostInput is the body of a host create or update; absent fields are nil.
type hostInput struct {
	Name       *string `json:"name"`
	Address    *string `json:"address"`
	Port       *int    `json:"port"`
	User       *string `json:"user"`
	PrivateKey *string `json:"private_key"`
	HostKey    *string `json:"host_key"`
	// GenerateKey asks ferry for a new ed25519 key pair instead of a pasted private key; the
	// answer's public_key goes into the host's authorized_keys.
	GenerateKey *bool `json:"generate_key"`
}

// hostView is a host as the API shows it: never the private key, only whether it is set,
// and the fingerprint of the pinned host key.
type hostView struct {
	*store.Host
	HasPrivateKey bool   `json:"has_private_key"`
	Fingerprint   string `json:"fingerprint"`
	// OfferedFingerprint is the key the host offered on a refused first connection, waiting
	// for an administrator to accept it (POST /hosts/{host}/accept-key).
	OfferedFingerprint string `json:"offered_fingerprint,omitempty"`
	// PublicKey is the public half of the host's private key, for its authorized_keys.
	PublicKey string `json:"public_key,omitempty"`
}

func newHostView(h *store.Host) hostView {
	return hostView{Host: h, HasPrivateKey: h.PrivateKey != "", Fingerprint: fingerprint(h.HostKey),
		OfferedFingerprint: h.OfferedFingerprint(), PublicKey: publicKeyOf(h.PrivateKey, h.Name)}
}

// fingerprint returns the SHA256 fingerprint of an authorized_keys line, or "" for none.
func fingerprint(hostKey string) string {
	if hostKey == "" {
		return ""
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(key)
}

func (s *Server) listHosts(c *gin.Context) {
	hosts, err := s.db.ListHosts(c.Request.Context())
	if err != nil {
		s.fail(c, fmt.Errorf("list hosts: %w", err))
		return
	}
	views := make([]hostView, 0, len(hosts))
	for _, h := range hosts {
		views = append(views, newHostView(h))
	}
	c.JSON(http.StatusOK, views)
}

func (s *Server) createHost(c *gin.Context) {
	var in hostInput
	if !s.bindJSON(c, &in) {
		return
	}
	h := &store.Host{Port: 22}
	set(&h.Name, in.Name)
	set(&h.Address, in.Address)
	set(&h.Port, in.Port)
	set(&h.User, in.User)
	set(&h.PrivateKey, in.PrivateKey)
	set(&h.HostKey, in.HostKey)
	if in.GenerateKey != nil && *in.GenerateKey {
		if h.PrivateKey != "" {
			s.fail(c, store.Errorf(store.EINVALID, "private_key: paste a key or let ferry generate one, not both"))
			return
		}
		key, err := generateKeyPair(h.Name)
		if err != nil {
			s.fail(c, err)
			return
		}
		h.PrivateKey = key
	}
	if err := s.db.CreateHost(c.Request.Context(), h); err != nil {
		s.fail(c, fmt.Errorf("create host %q: %w", h.Name, err))
		return
	}
	c.JSON(http.StatusCreated, newHostView(h))
}

func (s *Server) getHost(c *gin.Context) {
	h, err := s.db.GetHost(c.Request.Context(), c.Param("host"))
	if err != nil {
		s.fail(c, fmt.Errorf("get host %q: %w", c.Param("host"), err))
		return
	}
	c.JSON(http.StatusOK, newHostView(h))
}

func (s *Server) updateHost(c *gin.Context) {
	var in hostInput
	if !s.bindJSON(c, &in) {
		return
	}
	upd := store.HostUpdate{Name: in.Name, Address: in.Address, Port: in.Port, User: in.User,
		PrivateKey: in.PrivateKey, HostKey: in.HostKey}
	h, err := s.db.UpdateHost(c.Request.Context(), c.Param("host"), upd)
	if err != nil {
		s.fail(c, fmt.Errorf("update host %q: %w", c.Param("host"), err))
		return
	}
	c.JSON(http.StatusOK, newHostView(h))
}

func (s *Server) deleteHost(c *gin.Context) {
	if err := s.db.DeleteHost(c.Request.Context(), c.Param("host")); err != nil {
		s.fail(c, fmt.Errorf("delete host %q: %w", c.Param("host"), err))
		return
	}
	c.Status(http.StatusNoContent)
}

// acceptHostKey pins the key the host offered on a refused first connection (a host in a
// protected environment is not trusted on first use); the body names its fingerprint, so an
// administrator accepts the key they checked and no other.
func (s *Server) acceptHostKey(c *gin.Context) {
	var in struct {
		Fingerprint string `json:"fingerprint"`
	}
	if !s.bindJSON(c, &in) {
		return
	}
	h, err := s.db.AcceptHostKey(c.Request.Context(), c.Param("host"), in.Fingerprint)
	if err != nil {
		s.fail(c, fmt.Errorf("accept the host key of %q: %w", c.Param("host"), err))
		return
	}
	c.JSON(http.StatusOK, newHostView(h))
}
