package sshtest

import (
	"os"
	"strings"
	"testing"
)

// Authorize adds a public key (an authorized_keys line) to the keys every host of the cluster
// accepts for root, as an administrator adds a deploy key to ~/.ssh/authorized_keys.
func (c *Cluster) Authorize(tb testing.TB, line string) {
	tb.Helper()
	f, err := os.OpenFile(c.authorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatalf("open authorized_keys: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.TrimSpace(line) + "\n"); err != nil {
		tb.Fatalf("add a key to authorized_keys: %v", err)
	}
}
