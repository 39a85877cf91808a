package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
	"golang.org/x/crypto/ssh"
)

// HostUpdate holds the fields of a host to change; nil fields stay as they are.
type HostUpdate struct {
	Name, Address, User, PrivateKey, HostKey *string
	Port                                     *int
}

type hostRow struct {
	Host
	PrivateKeyEnc string `db:"private_key_enc"`
}

const hostColumns = `id, name, address, port, username, private_key_enc, host_key, offered_host_key, created_at, updated_at`

// CreateHost stores h and fills its ID and times. A zero port becomes 22. The private key and
// the host key must parse.
func (db *DB) CreateHost(ctx context.Context, h *Host) error {
	if h.Port == 0 {
		h.Port = 22
	}
	if err := db.checkHost(h); err != nil {
		return err
	}
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		h.CreatedAt, h.UpdatedAt = db.now(), db.now()
		err := tx.GetContext(ctx, &h.ID, db.q(`INSERT INTO hosts (name, address, port, username, private_key_enc, host_key, created_at, updated_at)
			VALUES (?, ?, ?, ?, '', ?, ?, ?) RETURNING id`), h.Name, h.Address, h.Port, h.User, h.HostKey, h.CreatedAt, h.UpdatedAt)
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "name: a host named %q already exists", h.Name)
		}
		if err != nil {
			return err
		}
		if _, err := db.sealInto(ctx, tx, "hosts", "private_key_enc", h.ID, h.PrivateKey); err != nil {
			return err
		}
		return db.audit(ctx, tx, "host.create", "host/"+h.Name, fmt.Sprintf("%s@%s:%d", h.User, h.Address, h.Port))
	})
}

// checkHost validates h and normalizes its host key to one authorized_keys line.
func (db *DB) checkHost(h *Host) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if h.PrivateKey != "" {
		if _, err := ssh.ParsePrivateKey([]byte(h.PrivateKey)); err != nil {
			if _, ok := err.(*ssh.PassphraseMissingError); ok {
				return Errorf(EINVALID, "private_key: the key is protected by a passphrase; give ferry a key without one")
			}
			return Errorf(EINVALID, "private_key: not a PEM or OpenSSH private key (%v)", err)
		}
	}
	h.HostKey = strings.TrimSpace(h.HostKey)
	if h.HostKey != "" {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
		if err != nil {
			return Errorf(EINVALID, "host_key: not a public key line such as \"ssh-ed25519 AAAA…\" (%v)", err)
		}
		h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	}
	return nil
}

// GetHost returns the host called name, with its private key decrypted, or ENOTFOUND.
func (db *DB) GetHost(ctx context.Context, name string) (*Host, error) {
	return db.getHost(ctx, db.db, `name = ?`, name, "host "+name)
}

// GetHostByID returns the host with id, or ENOTFOUND.
func (db *DB) GetHostByID(ctx context.Context, id int64) (*Host, error) {
	return db.getHost(ctx, db.db, `id = ?`, id, "host")
}

func (db *DB) getHost(ctx context.Context, q queryer, where string, arg any, what string) (*Host, error) {
	var row hostRow
	if err := q.GetContext(ctx, &row, db.q(`SELECT `+hostColumns+` FROM hosts WHERE `+where), arg); err != nil {
		return nil, formatError(err, what)
	}
	return db.openHost(&row)
}

func (db *DB) openHost(row *hostRow) (*Host, error) {
	h := row.Host
	var err error
	if h.PrivateKey, err = db.cipher.Open(row.PrivateKeyEnc, SecretPlace("hosts", "private_key_enc", h.ID)); err != nil {
		return nil, fmt.Errorf("host %s private key: %w", h.Name, err)
	}
	h.CreatedAt, h.UpdatedAt = h.CreatedAt.UTC(), h.UpdatedAt.UTC()
	return &h, nil
}

// ListHosts returns all hosts by name.
func (db *DB) ListHosts(ctx context.Context) ([]*Host, error) {
	var rows []*hostRow
	if err := db.db.SelectContext(ctx, &rows, `SELECT `+hostColumns+` FROM hosts ORDER BY name`); err != nil {
		return nil, err
	}
	out := make([]*Host, 0, len(rows))
	for _, r := range rows {
		h, err := db.openHost(r)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// UpdateHost changes the given fields of the host called name and returns it as it is now.
func (db *DB) UpdateHost(ctx context.Context, name string, upd HostUpdate) (*Host, error) {
	var out *Host
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `name = ?`, name, "host "+name)
		if err != nil {
			return err
		}
		for dst, src := range map[*string]*string{&h.Name: upd.Name, &h.Address: upd.Address, &h.User: upd.User, &h.PrivateKey: upd.PrivateKey, &h.HostKey: upd.HostKey} {
			if src != nil {
				*dst = *src
			}
		}
		if upd.Port != nil {
			h.Port = *upd.Port
		}
		if err := db.checkHost(h); err != nil {
			return err
		}
		enc, err := db.cipher.Seal(h.PrivateKey, SecretPlace("hosts", "private_key_enc", h.ID))
		if err != nil {
			return err
		}
		h.UpdatedAt = db.now()
		_, err = tx.ExecContext(ctx, db.q(`UPDATE hosts SET name = ?, address = ?, port = ?, username = ?, private_key_enc = ?, host_key = ?,
			host_key_first_use = host_key_first_use AND ?, updated_at = ? WHERE id = ?`),
			h.Name, h.Address, h.Port, h.User, enc, h.HostKey, upd.HostKey == nil, h.UpdatedAt, h.ID)
		if isUniqueViolation(err) {
			return Errorf(ECONFLICT, "name: a host named %q already exists", h.Name)
		}
		if err != nil {
			return err
		}
		if err := db.clearOfferedKey(ctx, tx, h, upd.HostKey != nil); err != nil {
			return err
		}
		out = h
		return db.audit(ctx, tx, "host.update", "host/"+h.Name, changedFields(upd.Name != nil, "name", upd.Address != nil, "address",
			upd.Port != nil, "port", upd.User != nil, "user", upd.PrivateKey != nil, "private_key", upd.HostKey != nil, "host_key"))
	})
	return out, err
}

// DeleteHost removes the host called name. A host still in an environment is not removed:
// the ECONFLICT error names the environments.
func (db *DB) DeleteHost(ctx context.Context, name string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `name = ?`, name, "host "+name)
		if err != nil {
			return err
		}
		var users []string
		if err := tx.SelectContext(ctx, &users, db.q(`SELECT p.name || '/' || e.name FROM environment_hosts eh
			JOIN environments e ON e.id = eh.environment_id JOIN projects p ON p.id = e.project_id
			WHERE eh.host_id = ? ORDER BY 1`), h.ID); err != nil {
			return err
		}
		if len(users) > 0 {
			return Errorf(ECONFLICT, "host %s is still in environment %s; remove it there first", name, strings.Join(users, ", "))
		}
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM hosts WHERE id = ?`), h.ID); err != nil {
			return formatError(err, "host "+name)
		}
		return db.audit(ctx, tx, "host.delete", "host/"+name, "")
	})
}

// PinHostKey records the host key seen on the first connection (trust on first use). It does
// nothing when the same key is pinned already, and fails with ECONFLICT when another one is.
func (db *DB) PinHostKey(ctx context.Context, hostID int64, key string) error {
	return db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `id = ?`, hostID, "host")
		if err != nil {
			return err
		}
		probe := Host{Name: h.Name, Address: h.Address, Port: h.Port, User: h.User, HostKey: key}
		if err := db.checkHost(&probe); err != nil {
			return err
		}
		switch h.HostKey {
		case probe.HostKey:
			return nil
		case "":
		default:
			return Errorf(ECONFLICT, "host %s already has another host key pinned", h.Name)
		}
		if db.dialect == Postgres { // take turns with a change protecting it (checkSharedHosts locks its hosts)
			if _, err := tx.ExecContext(ctx, db.q(`SELECT id FROM hosts WHERE id = ? FOR UPDATE`), h.ID); err != nil {
				return err
			}
		}
		var protected []string
		if err := tx.SelectContext(ctx, &protected, db.q(`SELECT p.name || '/' || e.name FROM environment_hosts eh
			JOIN environments e ON e.id = eh.environment_id JOIN projects p ON p.id = e.project_id
			WHERE eh.host_id = ? AND e.protected ORDER BY 1`), h.ID); err != nil {
			return err
		}
		if len(protected) > 0 { // protected since the caller looked: only an administrator pins its key
			return Errorf(EFORBIDDEN, "host %s is in the protected environment %s, so its key is not trusted on first use; an administrator accepts it", h.Name, strings.Join(protected, ", "))
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET host_key = ?, host_key_first_use = TRUE, offered_host_key = '', updated_at = ? WHERE id = ?`), probe.HostKey, db.now(), h.ID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "host.pin_key", "host/"+h.Name, "trusted on first use: "+probe.HostKey)
	})
}

// clearOfferedKey forgets the key a host offered once a host key is set for it by hand.
func (db *DB) clearOfferedKey(ctx context.Context, tx *sqlx.Tx, h *Host, hostKeySet bool) error {
	if !hostKeySet || h.OfferedHostKey == "" {
		return nil
	}
	h.OfferedHostKey = ""
	_, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET offered_host_key = '' WHERE id = ?`), h.ID)
	return err
}

// ProtectedEnvironmentsOf names ("project/environment") the protected environments that hold
// the host with id, sorted; none when it is in no protected environment.
func (db *DB) ProtectedEnvironmentsOf(ctx context.Context, hostID int64) ([]string, error) {
	var envs []string
	err := db.db.SelectContext(ctx, &envs, db.q(`SELECT p.name || '/' || e.name FROM environment_hosts eh
		JOIN environments e ON e.id = eh.environment_id JOIN projects p ON p.id = e.project_id
		WHERE eh.host_id = ? AND e.protected ORDER BY 1`), hostID)
	if err != nil {
		return nil, fmt.Errorf("list the protected environments of host %d: %w", hostID, err)
	}
	return envs, nil
}

// OfferHostKey remembers the key a host without a pinned key offered on a connection that
// ferry refused, so an administrator can accept it by its fingerprint (AcceptHostKey). It does
// nothing once a key is pinned. EINVALID when key is not a public key line.
func (db *DB) OfferHostKey(ctx context.Context, hostID int64, key string) error {
	parsed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return Errorf(EINVALID, "host key: not a public key line (%v)", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(parsed)))
	_, err = db.db.ExecContext(ctx, db.q(`UPDATE hosts SET offered_host_key = ? WHERE id = ? AND host_key = ''`), line, hostID)
	if err != nil {
		return fmt.Errorf("record the host key offered by host %d: %w", hostID, err)
	}
	return nil
}

// OfferedFingerprint returns the SHA256 fingerprint of the key h offered and ferry refused,
// "" when there is none.
func (h *Host) OfferedFingerprint() string {
	if h.OfferedHostKey == "" {
		return ""
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.OfferedHostKey))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(key)
}

// AcceptHostKey pins the key the host called name offered on a refused first connection,
// when fingerprint (SHA256:…) is that key's, and returns the host. EINVALID when the
// fingerprint is missing or is not the offered key's, or the host has offered none;
// ECONFLICT when a key is pinned already (change it with UpdateHost). Audited.
func (db *DB) AcceptHostKey(ctx context.Context, name, fingerprint string) (*Host, error) {
	fingerprint = strings.TrimSpace(fingerprint)
	if fingerprint == "" {
		return nil, Errorf(EINVALID, "fingerprint: required, such as \"SHA256:…\" from the refused deployment's log")
	}
	var out *Host
	err := db.Transact(ctx, func(tx *sqlx.Tx) error {
		h, err := db.getHost(ctx, tx, `name = ?`, name, "host "+name)
		if err != nil {
			return err
		}
		offered := h.OfferedFingerprint()
		switch {
		case h.HostKey != "":
			return Errorf(ECONFLICT, "host %s already has a pinned host key; to replace it, compare both fingerprints and re-pin (POST /api/v1/hosts/%s/repin-key), or set host_key on the host", name, name)
		case offered == "":
			return Errorf(EINVALID, "host %s has not offered a host key yet: deploy to it once (the connection is refused and its key kept), or set host_key on the host", name)
		case offered != fingerprint:
			return Errorf(EINVALID, "fingerprint: %s is not the key host %s offered (%s); check the key on the host itself before accepting", truncate(fingerprint, 80), name, offered)
		}
		h.HostKey, h.OfferedHostKey, h.UpdatedAt = h.OfferedHostKey, "", db.now()
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE hosts SET host_key = ?, host_key_first_use = FALSE, offered_host_key = '', updated_at = ? WHERE id = ?`),
			h.HostKey, h.UpdatedAt, h.ID); err != nil {
			return err
		}
		out = h
		return db.audit(ctx, tx, "host.accept_key", "host/"+name, "accepted the offered key "+offered)
	})
	return out, err
}
