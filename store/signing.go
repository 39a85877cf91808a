package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// signingTokenPrefix starts a Standard Webhooks signing secret, as GitLab takes it.
const signingTokenPrefix = "whsec_"

// ValidateSigningToken checks a webhook signing token: "" (none), or "whsec_" followed by the
// base64 of 24 to 64 bytes (Standard Webhooks; GitLab itself asks for 32). EINVALID otherwise.
func ValidateSigningToken(token string) error {
	if token == "" {
		return nil
	}
	encoded, ok := strings.CutPrefix(token, signingTokenPrefix)
	key, err := base64.StdEncoding.DecodeString(encoded)
	if !ok || err != nil || len(key) < 24 || len(key) > 64 {
		return Errorf(EINVALID, "webhook_signing_token: must be whsec_ followed by the base64 of 24 to 64 random bytes (GitLab wants 32), such as GitLab's own or one ferry's settings page generates")
	}
	return nil
}

// storeSigningToken writes p's webhook signing token, encrypted, in the transaction that
// creates or updates p. It is kept apart from the project's other columns so that it changes
// only when asked to.
func (db *DB) storeSigningToken(ctx context.Context, tx *sqlx.Tx, p *Project) error {
	if err := ValidateSigningToken(p.WebhookSigningToken); err != nil {
		return err
	}
	sealed, err := db.cipher.Seal(p.WebhookSigningToken, SecretPlace("projects", "webhook_signing_token_enc", p.ID))
	if err != nil {
		return fmt.Errorf("encrypt the webhook signing token of %s: %w", p.Name, err)
	}
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE projects SET webhook_signing_token_enc = ? WHERE id = ?`), sealed, p.ID); err != nil {
		return fmt.Errorf("store the webhook signing token of %s: %w", p.Name, err)
	}
	return nil
}

func (db *DB) openSigningToken(row *projectRow) (string, error) {
	token, err := db.cipher.Open(row.WebhookSigningTokenEnc, SecretPlace("projects", "webhook_signing_token_enc", row.ID))
	if err != nil {
		return "", fmt.Errorf("project %s webhook signing token: %w", row.Name, err)
	}
	return token, nil
}
