package build

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"ferry/store"
)

// zeroSHA is the before or after of a push that creates or deletes a ref.
const zeroSHA = "0000000000000000000000000000000000000000"

// Push is a GitLab push or tag push event, reduced to what ferry uses. Every field is text
// from the webhook: pass it on as data, never into a shell command.
type Push struct {
	// Project is the path with namespace, "group/app".
	Project    string
	ProjectURL string
	Ref        string
	// Branch is set for a branch push, Tag for a tag push.
	Branch string
	Tag    string
	IsTag  bool
	// TagMessage is the annotation of a pushed tag.
	TagMessage  string
	Before      string
	After       string
	CheckoutSHA string
	Head        HeadCommit
	UserName    string
	UserLogin   string
	// Deleted is a push that removed the branch or tag (after is all zeros).
	Deleted bool
	// Commits is how many commits the push brought.
	Commits int64
}

// HeadCommit is the newest commit of a push.
type HeadCommit struct {
	ID          string
	Message     string
	Title       string
	AuthorName  string
	AuthorEmail string
	URL         string
}

// Name returns the branch or tag name the push is about.
func (p *Push) Name() string {
	if p.IsTag {
		return p.Tag
	}
	return p.Branch
}

// SHA returns the commit to build: checkout_sha, or after when GitLab sent none.
func (p *Push) SHA() string {
	if p.CheckoutSHA != "" {
		return p.CheckoutSHA
	}
	return p.After
}

// ParseHook reads a GitLab webhook given its X-Gitlab-Event header and body. It handles
// "Push Hook" and "Tag Push Hook"; other events, malformed JSON and refs that are neither a
// branch nor a tag fail with an EINVALID *store.Error.
func ParseHook(eventHeader string, body []byte) (*Push, error) {
	kind := gitlab.EventType(eventHeader)
	if kind != gitlab.EventTypePush && kind != gitlab.EventTypeTagPush {
		return nil, store.Errorf(store.EINVALID, "GitLab event %q is not handled; ferry needs only push and tag push events", truncateText(eventHeader, 60))
	}
	event, err := gitlab.ParseWebhook(kind, body)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "the %s body is not valid JSON: %s", kind, jsonReason(err))
	}
	var p *Push
	switch e := event.(type) {
	case *gitlab.PushEvent:
		p = fromPushEvent(e)
	case *gitlab.TagEvent:
		p = fromTagEvent(e)
	default:
		return nil, store.Errorf(store.EINVALID, "GitLab event %q is not handled", kind)
	}
	return p, p.check(kind)
}

func (p *Push) check(kind gitlab.EventType) error {
	var ok bool
	if p.IsTag {
		p.Tag, ok = strings.CutPrefix(p.Ref, "refs/tags/")
	} else {
		p.Branch, ok = strings.CutPrefix(p.Ref, "refs/heads/")
	}
	if !ok || p.Name() == "" {
		return store.Errorf(store.EINVALID, "the %s names ref %q, which is not a %s", kind, truncateText(p.Ref, 80), map[bool]string{true: "tag", false: "branch"}[p.IsTag])
	}
	if p.Project == "" {
		return store.Errorf(store.EINVALID, "the %s has no project.path_with_namespace", kind)
	}
	p.Deleted = p.After == zeroSHA
	return nil
}

func fromPushEvent(e *gitlab.PushEvent) *Push {
	p := &Push{
		Project: e.Project.PathWithNamespace, ProjectURL: e.Project.WebURL, Ref: e.Ref,
		Before: e.Before, After: e.After, CheckoutSHA: e.CheckoutSHA,
		UserName: e.UserName, UserLogin: e.UserUsername, Commits: e.TotalCommitsCount,
	}
	var commits []HeadCommit
	for _, c := range e.Commits {
		if c != nil {
			commits = append(commits, HeadCommit{c.ID, c.Message, c.Title, c.Author.Name, c.Author.Email, c.URL})
		}
	}
	p.Head = headCommit(commits, p.SHA())
	return p
}

func fromTagEvent(e *gitlab.TagEvent) *Push {
	p := &Push{
		Project: e.Project.PathWithNamespace, ProjectURL: e.Project.WebURL, Ref: e.Ref, IsTag: true,
		TagMessage: e.Message, Before: e.Before, After: e.After, CheckoutSHA: e.CheckoutSHA,
		UserName: e.UserName, UserLogin: e.UserUsername, Commits: e.TotalCommitsCount,
	}
	var commits []HeadCommit
	for _, c := range e.Commits {
		if c != nil {
			commits = append(commits, HeadCommit{c.ID, c.Message, c.Title, c.Author.Name, c.Author.Email, c.URL})
		}
	}
	p.Head = headCommit(commits, p.SHA())
	return p
}

// headCommit picks the listed commit whose id is sha. GitLab lists at most 20 commits; when
// the head is not among them only its id is known (Git.Commit reads the rest).
func headCommit(commits []HeadCommit, sha string) HeadCommit {
	head := HeadCommit{ID: sha}
	for _, c := range commits {
		if c.ID == sha {
			head = c
		}
	}
	if head.Title == "" {
		head.Title, _, _ = strings.Cut(strings.TrimSpace(head.Message), "\n")
	}
	return head
}

func jsonReason(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return syn.Error() + " at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		return "field " + typ.Field + " should be " + typ.Type.String() + ", not " + typ.Value
	default:
		return err.Error()
	}
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
