package build

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/store"
)

func readPayload(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../testdata/gitlab/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseHookPush(t *testing.T) {
	p, err := ParseHook("Push Hook", readPayload(t, "push.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Push{
		Project: "mike/diaspora", ProjectURL: "http://example.com/mike/diaspora", Ref: "refs/heads/master", Branch: "master",
		Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
		CheckoutSHA: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", UserName: "John Smith", UserLogin: "jsmith", Commits: 4,
		Head: HeadCommit{
			ID: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", Message: "fixed readme\n", Title: "fixed readme",
			AuthorName: "GitLab dev user", AuthorEmail: "gitlabdev@dv6700.(none)",
			URL: "http://example.com/mike/diaspora/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
		},
	}
	if *p != want {
		t.Errorf("ParseHook =\n%+v\nwant\n%+v", *p, want)
	}
	if p.Name() != "master" || p.SHA() != want.CheckoutSHA {
		t.Errorf("Name, SHA = %q, %q", p.Name(), p.SHA())
	}
}

func TestParseHookTagPush(t *testing.T) {
	p, err := ParseHook("Tag Push Hook", readPayload(t, "tag_push.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.IsTag || p.Tag != "v1.0.0" || p.Branch != "" || p.Project != "jsmith/example" || p.Deleted ||
		p.SHA() != "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7" || p.Head.ID != p.SHA() || p.UserName != "John Smith" {
		t.Errorf("ParseHook(tag push) = %+v", p)
	}
}

func TestParseHookDeletedBranch(t *testing.T) {
	body := strings.Replace(string(readPayload(t, "push.json")), `"after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"`, `"after": "`+zeroSHA+`"`, 1)
	body = strings.Replace(body, `"checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"`, `"checkout_sha": null`, 1)
	p, err := ParseHook("Push Hook", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Deleted {
		t.Errorf("a push with after = 0000… is not Deleted: %+v", p)
	}
}

func TestParseHookRejects(t *testing.T) {
	push := string(readPayload(t, "push.json"))
	tests := []struct {
		name, event, body, want string
	}{
		{"other event", "Issue Hook", push, `GitLab event "Issue Hook" is not handled; ferry needs only push and tag push events`},
		{"no event", "", push, `GitLab event "" is not handled`},
		{"malformed JSON", "Push Hook", `{"ref": "refs/heads/main",`, "the Push Hook body is not valid JSON: unexpected end of JSON input"},
		{"wrong type", "Push Hook", `{"ref": 5}`, "the Push Hook body is not valid JSON: field ref should be string, not number"},
		{"not a branch", "Push Hook", strings.Replace(push, "refs/heads/master", "refs/merge-requests/1/head", 1), `names ref "refs/merge-requests/1/head", which is not a branch`},
		{"no project", "Push Hook", `{"ref": "refs/heads/main", "after": "` + strings.Repeat("a", 40) + `"}`, "has no project.path_with_namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHook(tt.event, []byte(tt.body))
			if store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseHook = %v; want EINVALID %q", err, tt.want)
			}
		})
	}
}

func TestVerifyToken(t *testing.T) {
	if !VerifyToken("s3cret", "s3cret") || VerifyToken("s3cre", "s3cret") || VerifyToken("", "") || VerifyToken("x", "") {
		t.Error("VerifyToken gave a wrong answer")
	}
}

func sign(key []byte, id, ts string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifySignature(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	body := []byte(`{"object_kind":"push"}`)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	good := sign(key, "msg_1", now, body)
	tests := []struct {
		name, secret, ts, header string
		body                     []byte
		want                     string // "" for success
	}{
		{"good", secret, now, good, body, ""},
		{"plain secret", "plain-secret", now, sign([]byte("plain-secret"), "msg_1", now, body), body, ""},
		{"one of several", secret, now, "v1,bm90IGl0 v2,xyz " + good, body, ""},
		{"body changed", secret, now, good, []byte(`{"object_kind":"tag_push"}`), "does not match"},
		{"other secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("other")), now, good, body, "does not match"},
		{"old timestamp", secret, old, sign(key, "msg_1", old, body), body, "away from now (at most 5m0s allowed"},
		{"no v1", secret, now, "v2,abc", body, "no v1 signature"},
		{"bad timestamp", secret, "yesterday", good, body, "is not a Unix time"},
		{"no secret", "", now, good, body, "no signing secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.secret, "msg_1", tt.ts, tt.body, tt.header)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("VerifySignature = %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("VerifySignature = %v, want %q", err, tt.want)
			case tt.want != "" && store.ErrorCode(err) != store.EUNAUTHORIZED:
				t.Errorf("VerifySignature = %v with code %s, want unauthorized", err, store.ErrorCode(err))
			}
		})
	}
}
