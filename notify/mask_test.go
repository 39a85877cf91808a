package notify

import (
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nAAAAC3NzaC1lZDI1NTE5AAAAIC\n-----END OPENSSH PRIVATE KEY-----"
	tests := []struct {
		name    string
		text    string
		secrets []string
		want    string
	}{
		{"listed secret", "deploying with s3cr3t-value now", []string{"s3cr3t-value"}, "deploying with **** now"},
		{"every occurrence", "abcd and abcd", []string{"abcd"}, "**** and ****"},
		{"short secrets are ignored", "the cat sat", []string{"cat"}, "the cat sat"},
		{"longest secret first", "token hunter2hunter2", []string{"hunter2", "hunter2hunter2"}, "token ****"},
		{"password=", "mysql -u root password=Pa55word! --host db", nil, "mysql -u root password=**** --host db"},
		{"DB_PASSWORD quoted", `DB_PASSWORD="x y z"`, nil, `DB_PASSWORD=****`},
		{"token: in yaml", "api_token: ghp_abcdef123", nil, "api_token: ****"},
		{"query token", "GET /x?token=abc123&page=2", nil, "GET /x?token=****&page=2"},
		{"secret key", "aws_secret_access_key=AKIAxyz", nil, "aws_secret_access_key=****"},
		{"authorization bearer", "Authorization: Bearer eyJhbGciOi.J9.sig", nil, "Authorization: Bearer ****"},
		{"bare bearer", "curl -H 'X: bearer abcdefgh12345678'", nil, "curl -H 'X: bearer ****'"},
		{"url password", "cloning https://deploy:glpat-123@gitlab.example.com/a.git", nil, "cloning https://deploy:****@gitlab.example.com/a.git"},
		{"pem block", "key:\n" + key + "\ndone", nil, "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\n****\n-----END OPENSSH PRIVATE KEY-----\ndone"},
		{"pem block without end", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA", nil, "-----BEGIN RSA PRIVATE KEY-----\n****"},
		{"pem block without begin", "MIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\nafter", nil, "****\n-----END RSA PRIVATE KEY-----\nafter"},
		{"public key untouched", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", nil, "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"},
		{"ordinary text untouched", "BUILD SUCCESS in 12s, passwords module compiled", nil, "BUILD SUCCESS in 12s, passwords module compiled"},
		{"chinese around secret", "密码是 Zx9-secret 请保密", []string{"Zx9-secret"}, "密码是 **** 请保密"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Mask(tt.text, tt.secrets); got != tt.want {
				t.Errorf("Mask(%q) =\n%q\nwant\n%q", tt.text, got, tt.want)
			}
		})
	}
}

func TestRenderedMessagesNeverShowSecrets(t *testing.T) {
	m := failedDeployment()
	m.Secrets = []string{"Sup3rS3cret"}
	m.Commit.Title = "rotate Sup3rS3cret"
	m.LogTail = []string{"connecting with password=Sup3rS3cret", "Authorization: Bearer abcdefghijklmnop"}
	html, err := RenderHTML(m)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"markdown": RenderMarkdown(m, 0).Body, "text": RenderText(m, 0).Body, "html": html,
	} {
		if strings.Contains(out, "Sup3rS3cret") || strings.Contains(out, "abcdefghijklmnop") {
			t.Errorf("%s rendering shows a secret:\n%s", name, out)
		}
		if !strings.Contains(out, "****") {
			t.Errorf("%s rendering has no mask:\n%s", name, out)
		}
	}
}
