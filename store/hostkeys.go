package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"
)

// RecordOfferedHostKey keeps key, the host key the host called name offers now (fetched by an
// administrator, or seen by a deployment that found the pinned key changed), for an
// administrator to compare and accept: AcceptHostKey when no key is pinned, RepinHostKey when
// another one is. It forgets any offered key when key is the pinned one. It returns the host.
// EINVALID when key is not a public key line; ENOTFOUND for no such host.
func (db *DB) RecordOfferedHostKey(ctx context.Context, name, key string) (*Host, error) {
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return nil, Errorf(EINVALID, "host key: not a public key line (%v)", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(parsed)))
	var out *Host
	err = db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `name = ?`, name, "host "+name)
		if err != nil {
			return err
		}
		offered := line
		if sameKey(h.HostKey, line) {
			offered = ""
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET offered_host_key = ? WHERE id = ?`), offered, h.ID); err != nil {
			return err
		}
		h.OfferedHostKey, out = offered, h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record the host key offered by host %s: %w", name, err)
	}
	return out, nil
}

// RecordChangedHostKey keeps the key a host with a pinned key offered instead of it, so the
// hosts page shows both fingerprints and an administrator can re-pin (RepinHostKey). It does
// nothing when no key is pinned or key is the pinned one.
func (db *DB) RecordChangedHostKey(ctx context.Context, hostID int64, key string) error {
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return Errorf(EINVALID, "host key: not a public key line (%v)", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(parsed)))
	_, err = db.db.ExecContext(ctx, db.q(`UPDATE hosts SET offered_host_key = ? WHERE id = ? AND host_key <> '' AND host_key <> ?`), line, hostID, line)
	if err != nil {
		return fmt.Errorf("record the changed host key of host %d: %w", hostID, err)
	}
	return nil
}

// sameKey reports whether two authorized_keys lines hold the same key, comments aside.
func sameKey(a, b string) bool {
	ka, _, _, _, errA := ssh.ParseAuthorizedKey([]byte(a))
	kb, _, _, _, errB := ssh.ParseAuthorizedKey([]byte(b))
	return errA == nil && errB == nil && string(ka.Marshal()) == string(kb.Marshal())
}

// RepinHostKey replaces the pinned host key of the host called name with the key it offered
// (RecordOfferedHostKey, or a deployment that found the key changed), after an administrator
// compared both: oldFingerprint must be the pinned key's and newFingerprint the offered one's,
// so a key that changed again meanwhile is not pinned unseen. The old key is no longer
// accepted. Audited with both fingerprints. EINVALID when a fingerprint is missing or does not
// match, or no other key was offered; ECONFLICT when no key is pinned (use AcceptHostKey).
func (db *DB) RepinHostKey(ctx context.Context, name, oldFingerprint, newFingerprint string) (*Host, error) {
	oldFingerprint, newFingerprint = strings.TrimSpace(oldFingerprint), strings.TrimSpace(newFingerprint)
	switch {
	case oldFingerprint == "":
		return nil, Errorf(EINVALID, "old_fingerprint: required, the fingerprint of the pinned key (SHA256:…)")
	case newFingerprint == "":
		return nil, Errorf(EINVALID, "fingerprint: required, the fingerprint of the key the host offers now (SHA256:…)")
	}
	var out *Host
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `name = ?`, name, "host "+name)
		if err != nil {
			return err
		}
		pinned, offered := keyFingerprint(h.HostKey), h.OfferedFingerprint()
		switch {
		case pinned == "":
			return Errorf(ECONFLICT, "host %s has no pinned host key to replace; accept the offered key instead", name)
		case pinned != oldFingerprint:
			return Errorf(EINVALID, "old_fingerprint: %s is not the key pinned for host %s (%s)", truncate(oldFingerprint, 80), name, pinned)
		case offered == "":
			return Errorf(EINVALID, "host %s has offered no other key; fetch its key first", name)
		case offered != newFingerprint:
			return Errorf(EINVALID, "fingerprint: %s is not the key host %s offered (%s); fetch its key again and compare", truncate(newFingerprint, 80), name, offered)
		}
		h.HostKey, h.OfferedHostKey, h.UpdatedAt = h.OfferedHostKey, "", db.now()
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET host_key = ?, host_key_first_use = FALSE, offered_host_key = '', updated_at = ? WHERE id = ?`),
			h.HostKey, h.UpdatedAt, h.ID); err != nil {
			return err
		}
		out = h
		return db.audit(ctx, tx, "host.repin_key", "host/"+name, "replaced the pinned key "+pinned+" with "+offered)
	})
	return out, err
}

// keyFingerprint returns the SHA256 fingerprint of an authorized_keys line, "" for none.
func keyFingerprint(line string) string {
	if line == "" {
		return ""
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(key)
}
