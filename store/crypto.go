package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Sealed values are text: a format prefix, then base64 of nonce || AES-256-GCM ciphertext.
//
//   - "v2:" values are bound to their place (associated data SecretPlace(table, column, id)):
//     the ciphertext of one row's secret, copied into another row or another column, fails to
//     open instead of handing out the first row's secret under the second row's name.
//   - "v1:" values, written by earlier versions of ferry, carry no associated data. They still
//     open, and Migrate reseals every one it finds as "v2:" (ResealSecrets), so after the first
//     start of this version none is left.
const (
	sealPrefixV1 = "v1:"
	sealPrefix   = "v2:"
)

// Cipher encrypts secrets (SSH keys, tokens, passwords, robot secrets) before they reach the
// database, with AES-256-GCM, a random nonce per value, and the value's place in the database
// as associated data.
//
// How to store a new secret column (the whole recipe):
//
//  1. Seal with the row's id: enc, err := db.cipher.Seal(plain, SecretPlace("projects", "clone_token_enc", p.ID)).
//     A new row has no id before its INSERT: insert the row with an empty column, then seal
//     and UPDATE it in the same transaction (see CreateHost).
//  2. Open with the same place: plain, err := db.cipher.Open(enc, SecretPlace("projects", "clone_token_enc", p.ID)).
//  3. Add {table, column} to secretColumns, so old-format values of it are resealed.
//
// Never seal one value for two places, and never copy a sealed value between rows in SQL:
// it will not open there.
type Cipher struct {
	aead cipher.AEAD
}

// SecretPlace is the associated data of a secret: "table/column/id", for example
// "hosts/private_key_enc/7". It names the column as the database does.
func SecretPlace(table, column string, id int64) string {
	return fmt.Sprintf("%s/%s/%d", table, column, id)
}

// NewCipher returns a Cipher for a 32-byte key, or an error for a key of another size.
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead}, nil
}

// Seal encrypts plain for the place named by place (see SecretPlace). The empty string stays
// empty, so "no secret" needs no decryption. It fails only when the system has no randomness.
func (c *Cipher) Seal(plain, place string) (string, error) {
	if plain == "" {
		return "", nil
	}
	if place == "" {
		return "", errors.New("seal secret: no place to bind it to")
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := c.aead.Seal(nonce, nonce, []byte(plain), []byte(place))
	return sealPrefix + base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a value made by Seal for place (or an old "v1:" value, which has no place).
// It fails, without saying anything of the value, when the value was sealed for another place
// (copied from another row), with another key, or was changed.
func (c *Cipher) Open(sealed, place string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	var aad []byte
	var body string
	switch {
	case strings.HasPrefix(sealed, sealPrefix):
		aad, body = []byte(place), strings.TrimPrefix(sealed, sealPrefix)
	case strings.HasPrefix(sealed, sealPrefixV1):
		body = strings.TrimPrefix(sealed, sealPrefixV1)
	default:
		return "", errors.New("decrypt secret: unknown format")
	}
	raw, err := base64.StdEncoding.DecodeString(body)
	n := c.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", errors.New("decrypt secret: damaged value")
	}
	plain, err := c.aead.Open(nil, raw[:n], raw[n:], aad)
	if err != nil {
		if aad != nil {
			return "", fmt.Errorf("decrypt secret: the value does not belong to %s (copied from another row?), was changed, or FERRY_SECRET_KEY is not the key it was sealed with", place)
		}
		return "", errors.New("decrypt secret: wrong FERRY_SECRET_KEY or damaged value")
	}
	return string(plain), nil
}

// unbound reports whether sealed is of the old format without a place.
func unbound(sealed string) bool { return strings.HasPrefix(sealed, sealPrefixV1) }

// secretColumns are the columns that hold sealed values, each in a table whose key is id.
var secretColumns = []struct{ table, column string }{
	{"hosts", "private_key_enc"},
	{"projects", "webhook_secret_enc"},
	{"projects", "gitlab_token_enc"},
	{"projects", "clone_credentials_enc"},
	{"projects", "webhook_signing_token_enc"},
	{"channels", "url_enc"},
	{"channels", "secret_enc"},
	{"variables", "value_enc"},
	{"exec_accounts", "private_key_enc"},
}

// ResealSecrets rewrites every old-format ("v1:") secret as a "v2:" value bound to its row,
// and returns how many it rewrote. A value changed by someone else meanwhile is left to them;
// one that does not open (another key, damaged) is left as it is, so a start with the wrong
// key changes nothing and fails only where such a secret is read. Migrate calls it; it is
// cheap when there is nothing to do.
func (db *DB) ResealSecrets(ctx context.Context) (int, error) {
	total := 0
	for _, sc := range secretColumns {
		var rows []struct {
			ID  int64  `db:"id"`
			Enc string `db:"enc"`
		}
		query := fmt.Sprintf(`SELECT id, %s AS enc FROM %s WHERE %s LIKE ?`, sc.column, sc.table, sc.column)
		if err := db.db.SelectContext(ctx, &rows, db.q(query), sealPrefixV1+"%"); err != nil {
			return total, fmt.Errorf("reseal %s.%s: %w", sc.table, sc.column, err)
		}
		for _, r := range rows {
			place := SecretPlace(sc.table, sc.column, r.ID)
			plain, err := db.cipher.Open(r.Enc, place)
			if err != nil {
				continue // another key or damaged: left as it is, and reading it says so
			}
			enc, err := db.cipher.Seal(plain, place)
			if err != nil {
				return total, err
			}
			update := fmt.Sprintf(`UPDATE %s SET %s = ? WHERE id = ? AND %s = ?`, sc.table, sc.column, sc.column)
			if _, err := db.db.ExecContext(ctx, db.q(update), enc, r.ID, r.Enc); err != nil {
				return total, fmt.Errorf("reseal %s: %w", place, err)
			}
			total++
		}
	}
	return total, nil
}

// sealInto seals plain for table.column of row id and writes it there, in tx: how a row that
// got its id from its INSERT stores its secrets.
func (db *DB) sealInto(ctx context.Context, tx *sqlx.Tx, table, column string, id int64, plain string) (string, error) {
	enc, err := db.cipher.Seal(plain, SecretPlace(table, column, id))
	if err != nil {
		return "", err
	}
	_, err = tx.ExecContext(ctx, db.q(fmt.Sprintf(`UPDATE %s SET %s = ? WHERE id = ?`, table, column)), enc, id)
	return enc, err
}
