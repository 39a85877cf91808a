package store

import (
	"regexp"
	"testing"
)

func TestTriggerMatch(t *testing.T) {
	trig := &Trigger{Keyword: "devops", Branches: []string{"main", "release/*"}, Tags: true}
	everything := &Trigger{}
	noTags := &Trigger{Keyword: "devops"}
	tests := []struct {
		name   string
		t      *Trigger
		push   PushInfo
		build  bool
		reason string
	}{
		{"main with keyword", trig, PushInfo{Name: "main", Message: "fix login [devops]"}, true, "branch main, commit message has 'devops'"},
		{"keyword in other case", trig, PushInfo{Name: "main", Message: "DevOps: ship it"}, true, "branch main, commit message has 'devops'"},
		{"keyword on a later line", trig, PushInfo{Name: "main", Message: "fix\n\nplease devops"}, true, "branch main, commit message has 'devops'"},
		{"release glob", trig, PushInfo{Name: "release/1.2", Message: "devops"}, true, "branch release/1.2, commit message has 'devops'"},
		{"glob stays in one segment", trig, PushInfo{Name: "release/1.2/hotfix", Message: "devops"}, false, "branch release/1.2/hotfix does not match main, release/*"},
		{"branch not listed", trig, PushInfo{Name: "feature/x", Message: "devops"}, false, "branch feature/x does not match main, release/*"},
		{"keyword inside a word", trig, PushInfo{Name: "main", Message: "mydevops tool"}, false, "commit message has no 'devops'"},
		{"keyword as prefix of a word", trig, PushInfo{Name: "main", Message: "devopsy"}, false, "commit message has no 'devops'"},
		{"no keyword", trig, PushInfo{Name: "main", Message: "fix"}, false, "commit message has no 'devops'"},
		{"deleted branch", trig, PushInfo{Name: "main", Message: "devops", Deleted: true}, false, "branch main was deleted"},
		{"tag", trig, PushInfo{Tag: true, Name: "v1.0"}, true, "tag v1.0 builds (trigger.tags)"},
		{"deleted tag", trig, PushInfo{Tag: true, Name: "v1.0", Deleted: true}, false, "tag v1.0 was deleted"},
		{"tag made by ferry", trig, PushInfo{Tag: true, Name: "v1.0", MadeByFerry: true}, false, "tag v1.0 was made by ferry"},
		{"tags off", noTags, PushInfo{Tag: true, Name: "v1.0"}, false, "tag v1.0: tag builds are off (trigger.tags)"},
		{"empty trigger builds every branch", everything, PushInfo{Name: "any/thing", Message: "x"}, true, "branch any/thing builds on every push"},
		{"nil trigger is the default", nil, PushInfo{Name: "main", Message: "no word"}, false, "commit message has no 'devops'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build, reason := tt.t.Match(tt.push)
			if build != tt.build || reason != tt.reason {
				t.Errorf("Match(%+v) = %v, %q; want %v, %q", tt.push, build, reason, tt.build, tt.reason)
			}
		})
	}
}

func TestHasKeyword(t *testing.T) {
	tests := []struct {
		msg, kw string
		want    bool
	}{
		{"deploy [ci-deploy] now", "ci-deploy", true},
		{"x ci-deployment", "ci-deploy", false},
		{"a.b release", "a.b", true},
		{"axb release", "a.b", false}, // the dot is literal, not a pattern
		{"部署devops", "devops", false},
		{"部署 devops", "devops", true},
		{"", "devops", false},
		{"anything", "", true},
	}
	for _, tt := range tests {
		if got := HasKeyword(tt.msg, tt.kw); got != tt.want {
			t.Errorf("HasKeyword(%q, %q) = %v, want %v", tt.msg, tt.kw, got, tt.want)
		}
	}
}

func TestTriggerDeployTarget(t *testing.T) {
	trig := &Trigger{Deploy: map[string]string{"main": "staging", "release/*": "prod", "*": "test"}}
	tests := []struct {
		branch string
		env    string
		ok     bool
	}{
		{"main", "staging", true},
		{"release/2", "prod", true},
		{"feature", "test", true},
		{"feature/x", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		env, ok := trig.DeployTarget(tt.branch)
		if env != tt.env || ok != tt.ok {
			t.Errorf("DeployTarget(%q) = %q, %v; want %q, %v", tt.branch, env, ok, tt.env, tt.ok)
		}
	}
	if env, ok := (&Trigger{}).DeployTarget("main"); ok {
		t.Errorf("a trigger without deploy rules deploys main to %q", env)
	}
}

// HasKeyword compares runes instead of compiling a pattern for every push; it must decide
// exactly as the pattern it replaced did.
func TestHasKeywordDecidesAsThePatternDid(t *testing.T) {
	pattern := func(message, keyword string) bool {
		re, err := regexp.Compile(`(?i)(?:^|[^\p{L}\p{N}_])` + regexp.QuoteMeta(keyword) + `(?:$|[^\p{L}\p{N}_])`)
		return err == nil && re.MatchString(message)
	}
	messages := []string{"", "devops", "DevOps fix", "fix [DEVOPS]", "devops_x", "x_devops", "2devops", "devops2", "de vops",
		"部署devops", "部署 devops", "devops部署", "devops。", "ÉTÉ devops", "été", "ÉTÉ", "\xffdevops\xff", "devopsdevops devops",
		"ǅ", "ǆ x", "Kelvin \u212a", "k", "ΣΑΣ σας", "ciDeploy", "ci-deploy!", "a.b", "axb", "\u0661devops", "devops\u00b2"}
	keywords := []string{"devops", "DEVOPS", "ci-deploy", "a.b", "été", "ǅ", "k", "σας", "\xff", "x y"}
	for _, m := range messages {
		for _, k := range keywords {
			if got, want := HasKeyword(m, k), pattern(m, k); got != want {
				t.Errorf("HasKeyword(%q, %q) = %v, the pattern says %v", m, k, got, want)
			}
		}
	}
}
