package build

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// SignatureTolerance is how far a Standard Webhooks timestamp may be from now.
const SignatureTolerance = 5 * time.Minute

// RefusedToken is the answer to a webhook whose X-Gitlab-Token is wrong, whose project has no
// secret, or whose project ferry does not know: the same words for all three, so that the
// answer does not tell which GitLab paths ferry has.
const RefusedToken = "webhook refused: its X-Gitlab-Token does not match the secret token of a ferry project with this GitLab path; " +
	"check the hook's URL and secret token in GitLab and the project's gitlab_path in ferry"

// CheckSignature checks the Standard Webhooks headers GitLab sends when the hook has a
// signing token (webhook-id, webhook-timestamp, webhook-signature) against p's
// WebhookSigningToken. A project without a signing token passes. Otherwise a delivery without
// the headers, with a timestamp more than SignatureTolerance from now, or with no matching
// signature fails with an EUNAUTHORIZED *store.Error saying which.
func CheckSignature(p *store.Project, header http.Header, body []byte) error {
	if p.WebhookSigningToken == "" {
		return nil
	}
	id, ts, sig := header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	if id == "" || ts == "" || sig == "" {
		return store.Errorf(store.EUNAUTHORIZED, "webhook refused: project %s has a webhook signing token, and the delivery is not signed (it needs the webhook-id, webhook-timestamp and webhook-signature headers); set the same signing token on the hook in GitLab", p.Name)
	}
	return VerifySignature(p.WebhookSigningToken, id, ts, body, sig)
}

// VerifyToken reports whether the X-Gitlab-Token a webhook carried equals the project's
// secret, in time that does not depend on where they differ. An empty want never matches.
func VerifyToken(got, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// VerifySignature checks a Standard Webhooks signature: header (webhook-signature) holds one
// or more space-separated "v1,<base64 HMAC-SHA256 of id.timestamp.body>"; secret is the
// signing key, "whsec_"+base64 or plain text. It fails with an EUNAUTHORIZED *store.Error when
// no signature matches or the timestamp is more than 5 minutes from now.
func VerifySignature(secret, id, timestamp string, body []byte, header string) error {
	key, err := signingKey(secret)
	if err != nil {
		return err
	}
	if err := checkTimestamp(timestamp, time.Now()); err != nil {
		return err
	}
	want := signature(key, id, timestamp, body)
	found := false
	for _, sig := range strings.Fields(header) {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		found = true
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	if !found {
		return store.Errorf(store.EUNAUTHORIZED, "the webhook carries no v1 signature in its webhook-signature header")
	}
	return store.Errorf(store.EUNAUTHORIZED, "the webhook signature does not match the project's signing secret")
}

func signingKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, store.Errorf(store.EUNAUTHORIZED, "no signing secret is set for this project")
	}
	encoded, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "the signing secret starts with whsec_ but is not base64")
	}
	return key, nil
}

func checkTimestamp(timestamp string, now time.Time) error {
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return store.Errorf(store.EUNAUTHORIZED, "the webhook-timestamp %q is not a Unix time", truncateText(timestamp, 40))
	}
	off := now.Sub(time.Unix(secs, 0))
	if off > SignatureTolerance || off < -SignatureTolerance {
		return store.Errorf(store.EUNAUTHORIZED, "the webhook timestamp is %s away from now (at most %s allowed, to stop replays)", off.Abs().Round(time.Second), SignatureTolerance)
	}
	return nil
}

// signature is the HMAC-SHA256 of "id.timestamp.body" under key.
func signature(key []byte, id, timestamp string, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return mac.Sum(nil)
}
