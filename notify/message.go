// Package notify tells people what ferry did: it renders a Message for mail, DingTalk, WeCom,
// Feishu and generic webhooks, sends it through one small Sender interface, classifies failures
// as permanent or retryable, and plans sends under each platform's rate limit.
//
// The senders take a Message and know nothing of database rows; the worker that reads queued
// notices from the store builds the Message, asks a Limiter what may go now, calls Send and
// retries with Backoff.
package notify

import (
	"fmt"
	"strings"
	"time"
)

// Event names what happened. The string values are stable: they appear in the generic
// webhook's JSON and X-Ferry-Event header.
type Event string

// The events a notice can be about.
const (
	BuildFailed         Event = "build.failed"
	BuildSucceeded      Event = "build.succeeded"
	DeploymentStarted   Event = "deployment.started"
	DeploymentSucceeded Event = "deployment.succeeded"
	DeploymentFailed    Event = "deployment.failed"
	DeploymentCanceled  Event = "deployment.canceled"
	// Change control: a deployment waits for approval (mailed to the people who may approve),
	// was approved by enough people, or was rejected (by a person, or nobody approved in time).
	DeploymentAwaitingApproval Event = "deployment.awaiting_approval"
	DeploymentApproved         Event = "deployment.approved"
	DeploymentRejected         Event = "deployment.rejected"
	// A job run waits for approval (mailed to the people who may approve it) or was rejected
	// (by a person, or nobody approved it in time).
	RunAwaitingApproval Event = "run.awaiting_approval"
	RunRejected         Event = "run.rejected"
	// Digest is a message made by a Limiter that merges notices which had to wait for a rate
	// limit; its Merged field holds them.
	Digest Event = "digest"
)

// MaxLogLines is how many of the last log lines a rendered message shows.
const MaxLogLines = 20

// Commit is the commit a build or deployment was about.
type Commit struct {
	SHA    string `json:"sha"`    // short sha, e.g. "3f2a9c1"
	Author string `json:"author"` // author name
	Title  string `json:"title"`  // first line of the commit message
}

// Message is what a notice says. Field names in JSON are stable (the generic webhook posts
// this struct; see webhook.go). Secrets is never serialized: it lists values to mask wherever
// the message is rendered.
type Message struct {
	ID          string        `json:"id,omitempty"` // the notice's id; the webhook's X-Ferry-Delivery
	Event       Event         `json:"event"`
	Project     string        `json:"project"`
	Version     string        `json:"version,omitempty"`
	Commit      Commit        `json:"commit"`
	Environment string        `json:"environment,omitempty"`
	Job         string        `json:"job,omitempty"` // the job of a run
	HostsOK     []string      `json:"hosts_ok,omitempty"`
	HostsFailed []string      `json:"hosts_failed,omitempty"`
	Duration    time.Duration `json:"duration_ns,omitempty"`
	TriggeredBy string        `json:"triggered_by,omitempty"` // "alice", "push by bob", "auto-deploy after build #12"
	URL         string        `json:"url,omitempty"`          // the page of the build or deployment
	LogTail     []string      `json:"log_tail,omitempty"`     // last lines of the failing log
	Time        time.Time     `json:"time"`
	Merged      []Message     `json:"merged,omitempty"` // only for Event == Digest
	Secrets     []string      `json:"-"`
}

// Title is a one-line summary of the message, e.g. "orders: deployment of v12 to prod failed".
func (m Message) Title() string {
	if m.Event == Digest {
		return digestTitle(m.Merged)
	}
	project := oneLine(m.Project)
	switch m.Event {
	case BuildFailed:
		return fmt.Sprintf("%s: build of %s failed", project, m.buildSubject())
	case BuildSucceeded:
		return fmt.Sprintf("%s: build of %s succeeded", project, m.buildSubject())
	case DeploymentStarted, DeploymentSucceeded, DeploymentFailed, DeploymentCanceled:
		return fmt.Sprintf("%s: deployment of %s to %s %s", project, oneLine(m.Version),
			oneLine(m.Environment), strings.TrimPrefix(string(m.Event), "deployment."))
	case DeploymentAwaitingApproval, DeploymentApproved, DeploymentRejected:
		return fmt.Sprintf("%s: deployment of %s to %s %s", project, oneLine(m.Version), oneLine(m.Environment), gateWords[m.Event])
	case RunAwaitingApproval, RunRejected:
		return fmt.Sprintf("%s: run of job %s %s", project, oneLine(m.Job), gateWords[m.Event])
	default:
		return fmt.Sprintf("%s: %s", project, oneLine(string(m.Event)))
	}
}

var gateWords = map[Event]string{
	DeploymentAwaitingApproval: "awaits your approval",
	DeploymentApproved:         "was approved",
	DeploymentRejected:         "was rejected",
	RunAwaitingApproval:        "awaits your approval",
	RunRejected:                "was rejected",
}

// Failed reports whether the message is about a failure (and so shows a log tail).
func (m Message) Failed() bool {
	return m.Event == BuildFailed || m.Event == DeploymentFailed
}

func (m Message) buildSubject() string {
	switch {
	case m.Version != "":
		return oneLine(m.Version)
	case m.Commit.SHA != "":
		return oneLine(m.Commit.SHA)
	default:
		return "a commit"
	}
}

func digestTitle(merged []Message) string {
	const shown = 3
	var titles []string
	for i, m := range merged {
		if i == shown {
			titles = append(titles, "…")
			break
		}
		titles = append(titles, m.Title())
	}
	return fmt.Sprintf("%d more notices: %s", len(merged), strings.Join(titles, "; "))
}

// facts are the labelled lines of a message body, in the order they are shown.
type fact struct{ Label, Value string }

func (m Message) facts() []fact {
	var fs []fact
	add := func(label, value string) {
		if value = oneLine(value); value != "" {
			fs = append(fs, fact{label, value})
		}
	}
	add("Project", m.Project)
	add("Version", m.Version)
	add("Commit", commitLine(m.Commit))
	add("Environment", m.Environment)
	add("Hosts", hostsLine(m.HostsOK, m.HostsFailed))
	if m.Duration > 0 {
		add("Duration", m.Duration.Round(time.Second).String())
	}
	add("Triggered by", m.TriggeredBy)
	return fs
}

func commitLine(c Commit) string {
	parts := []string{}
	for _, p := range []string{c.SHA, c.Title} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	line := strings.Join(parts, " ")
	if c.Author != "" {
		line += " (" + c.Author + ")"
	}
	return strings.TrimSpace(line)
}

func hostsLine(ok, failed []string) string {
	if len(ok) == 0 && len(failed) == 0 {
		return ""
	}
	line := fmt.Sprintf("%d ok", len(ok))
	if len(failed) > 0 {
		line += fmt.Sprintf(", %d failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return line
}

// oneLine puts user-supplied text (a commit title, a branch) on one line so that it cannot
// add headings, list items or fake fields to a rendered message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
