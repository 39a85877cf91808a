package handlers

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/ssh"

	"ferry/store"
)

// HostKeyScanner fetches the SSH host key a server offers at address:port, as an
// authorized_keys line, without logging in (deploy.ScanHostKey).
type HostKeyScanner func(ctx context.Context, address string, port int) (string, error)

// generateKeyPair returns a new ed25519 private key (OpenSSH PEM) for a host, named for it.
func generateKeyPair(host string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate a key pair: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "ferry@"+host)
	if err != nil {
		return "", fmt.Errorf("encode the generated key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), nil
}

// publicKeyOf returns the authorized_keys line of a private key, "" when it cannot be read.
func publicKeyOf(privatePEM, host string) string {
	if privatePEM == "" {
		return ""
	}
	signer, err := ssh.ParsePrivateKey([]byte(privatePEM))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " ferry@" + host
}

// scanHostKey fetches the key the host offers now and keeps it as offered, for an administrator
// to compare with the pinned one (if any) and accept or re-pin. A host that cannot be reached
// answers 400 naming its address, so the form shows it there.
func (s *Server) scanHostKey(c *gin.Context) {
	ctx := c.Request.Context()
	h, err := s.db.GetHost(ctx, c.Param("host"))
	if err != nil {
		s.fail(c, fmt.Errorf("get host %q: %w", c.Param("host"), err))
		return
	}
	if s.scanner == nil {
		s.fail(c, store.Errorf(store.EINVALID, "address: this ferry does not fetch host keys; paste the host key (ssh-keyscan -t ed25519 %s) instead", h.Address))
		return
	}
	line, err := s.scanner(ctx, h.Address, h.Port)
	if err != nil {
		s.fail(c, store.Errorf(store.EINVALID, "address: %v", err))
		return
	}
	h, err = s.db.RecordOfferedHostKey(ctx, h.Name, line)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, newHostView(h))
}

// repinHostKey replaces the pinned key with the offered one; the body names both fingerprints,
// so the administrator pins the key they compared and no other.
func (s *Server) repinHostKey(c *gin.Context) {
	var in struct {
		OldFingerprint string `json:"old_fingerprint"`
		Fingerprint    string `json:"fingerprint"`
	}
	if !s.bindJSON(c, &in) {
		return
	}
	h, err := s.db.RepinHostKey(c.Request.Context(), c.Param("host"), in.OldFingerprint, in.Fingerprint)
	if err != nil {
		s.fail(c, fmt.Errorf("re-pin the host key of %q: %w", c.Param("host"), err))
		return
	}
	c.JSON(http.StatusOK, newHostView(h))
}
