package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"ferry/store"
)

// streams are what the job commands read and write.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// buildCommand queues a build: ferry build PROJECT (--ref REF | --sha SHA) [--follow].
func buildCommand(ctx context.Context, args []string, env func(string) string, std streams) error {
	const usage = "ferry build PROJECT (--ref REF | --sha SHA [--ref BRANCH]) [--follow]"
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	ref := fs.String("ref", "", "branch or tag to build (resolved on the remote now)")
	sha := fs.String("sha", "", "full commit id to build")
	follow := fs.Bool("follow", false, "show the log until the build ends; exit 0 only on success")
	pos, err := parseArgs(fs, args, 1, 1, usage)
	if err != nil {
		return err
	}
	if *ref == "" && *sha == "" {
		return usagef("give --ref or --sha; usage: %s", usage)
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	var b store.Build
	if err := c.call(ctx, "POST", "/projects/"+pathEscape(pos[0])+"/builds", map[string]string{"ref": *ref, "sha": *sha}, &b); err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "build %d (#%d of %s) queued: %s %s\n", b.ID, b.Number, b.Project, b.Ref, short(b.SHA, 8))
	if !*follow {
		return nil
	}
	return followBuild(ctx, c, b.ID, std.stdout)
}

// deployCommand queues a deployment:
// ferry deploy PROJECT ENVIRONMENT (VERSION | --latest) [--hosts a,b] [--strategy KIND[:N]] [--follow].
func deployCommand(ctx context.Context, args []string, env func(string) string, std streams) error {
	const usage = "ferry deploy PROJECT ENVIRONMENT (VERSION | --latest) [--hosts a,b] [--strategy rolling:25%] [--at TIME] [--override-freeze REASON] [--follow]"
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	latest := fs.Bool("latest", false, "deploy the newest kept version")
	hosts := fs.String("hosts", "", "only these hosts of the environment, in this order (comma list)")
	strategy := fs.String("strategy", "", "serial, parallel[:N], rolling:N or canary:N (N a count or a percentage)")
	follow := fs.Bool("follow", false, "show progress until the deployment ends; exit 0 only on success")
	at := fs.String("at", "", "run it later: an RFC 3339 time, or HH:MM for the next such time on this machine's clock")
	override := fs.String("override-freeze", "", "administrators: deploy during a freeze, for this reason (audited)")
	pos, err := parseArgs(fs, args, 2, 3, usage)
	if err != nil {
		return err
	}
	if (len(pos) == 3) == *latest {
		return usagef("give a VERSION or --latest; usage: %s", usage)
	}
	body := map[string]any{"environment": pos[1]}
	if *at != "" {
		when, err := parseAt(*at, time.Now())
		if err != nil {
			return err
		}
		body["scheduled_at"] = when.Format(time.RFC3339)
	}
	if *override != "" {
		body["override_freeze"], body["reason"] = true, *override
	}
	if *hosts != "" {
		body["hosts"] = strings.Split(*hosts, ",")
	}
	if *strategy != "" {
		s, err := parseStrategy(*strategy)
		if err != nil {
			return err
		}
		body["strategy"] = s
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	project := pos[0]
	if *latest {
		v, err := latestVersion(ctx, c, project)
		if err != nil {
			return err
		}
		body["version"] = v
	} else {
		body["version"] = pos[2]
	}
	return queueDeployment(ctx, c, project, body, *follow, std.stdout)
}

func queueDeployment(ctx context.Context, c *apiClient, project string, body map[string]any, follow bool, stdout io.Writer) error {
	var d store.Deployment
	if err := c.call(ctx, "POST", "/projects/"+pathEscape(project)+"/deployments", body, &d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deployment %d %s: %s to %s of %s (%d hosts)\n", d.ID, waitingWords(&d), d.Version, d.Environment, d.Project, len(d.Hosts))
	if !follow {
		return nil
	}
	return followDeployment(ctx, c, d.ID, stdout)
}

// parseStrategy reads "rolling:25%", "canary:1", "parallel:3", "parallel" or "serial".
func parseStrategy(s string) (map[string]any, error) {
	kind, n, hasN := strings.Cut(s, ":")
	out := map[string]any{"kind": kind}
	switch kind {
	case store.StrategySerial:
		if hasN {
			return nil, usagef("--strategy serial takes no number")
		}
	case store.StrategyParallel:
		if hasN {
			c, err := strconv.Atoi(n)
			if err != nil || c < 0 {
				return nil, usagef("--strategy parallel:%s: want a count of hosts at once, such as parallel:3", n)
			}
			out["concurrency"] = c
		}
	case store.StrategyRolling, store.StrategyCanary:
		if !hasN || n == "" {
			return nil, usagef("--strategy %s: give the batch, such as %s:2 or %s:25%%", kind, kind, kind)
		}
		out["batch"] = n
	default:
		return nil, usagef("--strategy %q: want serial, parallel[:N], rolling:N or canary:N", s)
	}
	return out, nil
}

// latestVersion returns the name of the project's newest kept version.
func latestVersion(ctx context.Context, c *apiClient, project string) (string, error) {
	var versions []store.Version
	if err := c.call(ctx, "GET", "/projects/"+pathEscape(project)+"/versions", nil, &versions); err != nil {
		return "", err
	}
	for _, v := range versions {
		if v.DeletedAt == nil {
			return v.Name, nil
		}
	}
	return "", fmt.Errorf("%s has no kept version yet: build one first (ferry build %s --ref main)", project, project)
}

// rollbackCommand deploys the version that ran on the environment before the current one.
func rollbackCommand(ctx context.Context, args []string, env func(string) string, std streams) error {
	const usage = "ferry rollback PROJECT ENVIRONMENT [--yes] [--follow]"
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	yes := fs.Bool("yes", false, "do not ask")
	follow := fs.Bool("follow", false, "show progress until the deployment ends; exit 0 only on success")
	pos, err := parseArgs(fs, args, 2, 2, usage)
	if err != nil {
		return err
	}
	if !*yes && !isTerminal(std.stdin) {
		return usagef("rollback asks before it deploys, and stdin is not a terminal: add --yes")
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	project, envName := pos[0], pos[1]
	current, previous, err := versionsRunBefore(ctx, c, project, envName)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "%s of %s runs %s; rolling back to %s, which ran there before\n", envName, project, current, previous)
	if !*yes {
		fmt.Fprintf(std.stdout, "Deploy %s to %s? [y/N] ", previous, envName)
		answer, _ := bufio.NewReader(std.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("rollback not confirmed: nothing deployed")
		}
	}
	body := map[string]any{"environment": envName, "version": previous}
	return queueDeployment(ctx, c, project, body, *follow, std.stdout)
}

// versionsRunBefore reads the environment's successful deployments, newest first: the first
// names what runs now, the next with another version what ran before it.
func versionsRunBefore(ctx context.Context, c *apiClient, project, env string) (current, previous string, err error) {
	before := int64(0)
	for page := 0; page < 20; page++ {
		q := url.Values{"environment": {env}, "status": {store.DeploymentSuccess}, "limit": {"100"}}
		if before > 0 {
			q.Set("before", strconv.FormatInt(before, 10))
		}
		var ds []store.Deployment
		if err := c.call(ctx, "GET", "/projects/"+pathEscape(project)+"/deployments?"+q.Encode(), nil, &ds); err != nil {
			return "", "", err
		}
		for _, d := range ds {
			switch {
			case current == "":
				current = d.Version
			case d.Version != current:
				return current, d.Version, nil
			}
			before = d.ID
		}
		if len(ds) < 100 {
			break
		}
	}
	if current == "" {
		return "", "", fmt.Errorf("nothing was deployed to %s of %s yet: there is nothing to roll back", env, project)
	}
	return "", "", fmt.Errorf("%s of %s has only ever run %s: there is no earlier version to roll back to", env, project, current)
}

// jobCommand runs cancel or retry on a build or a deployment.
func jobCommand(ctx context.Context, verb string, args []string, env func(string) string, std streams) error {
	usage := "ferry " + verb + " build|deployment ID [--follow]"
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	follow := fs.Bool("follow", false, "follow the new job (retry)")
	pos, err := parseArgs(fs, args, 2, 2, usage)
	if err != nil {
		return err
	}
	kind := pos[0]
	id, err := strconv.ParseInt(pos[1], 10, 64)
	if (kind != store.JobBuild && kind != store.JobDeployment) || err != nil || id <= 0 {
		return usagef("usage: %s", usage)
	}
	if *follow && verb == "cancel" {
		return usagef("cancel takes no --follow; follow the job with ferry logs %s %d -f", kind, id)
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	switch {
	case verb == "cancel":
		var job struct{ Status string }
		if err := c.call(ctx, "POST", fmt.Sprintf("/%ss/%d/cancel", kind, id), nil, &job); err != nil {
			return err
		}
		fmt.Fprintf(std.stdout, "%s %d: cancel asked (now %s)\n", kind, id, job.Status)
		return nil
	case kind == store.JobDeployment:
		var d store.Deployment
		if err := c.call(ctx, "POST", fmt.Sprintf("/deployments/%d/retry", id), nil, &d); err != nil {
			return err
		}
		fmt.Fprintf(std.stdout, "deployment %d queued: %s to %s of %s again, on %d hosts (retry of %d)\n",
			d.ID, d.Version, d.Environment, d.Project, len(d.Hosts), id)
		if *follow {
			return followDeployment(ctx, c, d.ID, std.stdout)
		}
		return nil
	default:
		return retryBuild(ctx, c, id, *follow, std.stdout)
	}
}

// retryBuild builds the commit of a build again (the API has no retry for builds: a new build
// of the same commit is one).
func retryBuild(ctx context.Context, c *apiClient, id int64, follow bool, stdout io.Writer) error {
	var old store.Build
	if err := c.call(ctx, "GET", fmt.Sprintf("/builds/%d", id), nil, &old); err != nil {
		return err
	}
	ref := old.Branch
	if ref == "" {
		ref = old.Tag
	}
	var b store.Build
	if err := c.call(ctx, "POST", "/projects/"+pathEscape(old.Project)+"/builds", map[string]string{"sha": old.SHA, "ref": ref}, &b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "build %d (#%d of %s) queued: %s %s again (retry of %d)\n", b.ID, b.Number, b.Project, b.Ref, short(b.SHA, 8), id)
	if follow {
		return followBuild(ctx, c, b.ID, stdout)
	}
	return nil
}

// logsCommand prints a job's log: what is stored, or with -f live until the job ends.
func logsCommand(ctx context.Context, args []string, env func(string) string, std streams) error {
	const usage = "ferry logs build|deployment|run ID [-f] [--host NAME] [--step N]"
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	follow := fs.Bool("f", false, "follow the log until the job ends; exit 0 only if it succeeded")
	fs.BoolVar(follow, "follow", false, "the same as -f")
	host := fs.String("host", "", "only this host's lines (deployments, runs: NAME or STEP/NAME)")
	step := fs.Int("step", 0, "only this step's lines (runs; steps are numbered from 1)")
	pos, err := parseArgs(fs, args, 2, 2, usage)
	if err != nil {
		return err
	}
	kind := pos[0]
	id, err := strconv.ParseInt(pos[1], 10, 64)
	if (kind != store.JobBuild && kind != store.JobDeployment && kind != store.JobRunLog) || err != nil || id <= 0 {
		return usagef("usage: %s", usage)
	}
	if *host != "" && kind == store.JobBuild {
		return usagef("--host is for deployment and run logs")
	}
	if *step != 0 && kind != store.JobRunLog {
		return usagef("--step is for run logs")
	}
	var filter runLogFilter
	if kind == store.JobRunLog {
		if filter, err = parseRunLogFilter(*step, *host); err != nil {
			return err
		}
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	if kind == store.JobRunLog {
		return runLogs(ctx, c, id, *follow, filter, std.stdout)
	}
	print := func(lines []store.LogLine) {
		for _, l := range lines {
			if *host != "" && l.Host != *host {
				continue
			}
			if l.Host != "" && *host == "" {
				fmt.Fprintf(std.stdout, "%s | %s\n", l.Host, l.Text)
			} else {
				fmt.Fprintln(std.stdout, l.Text)
			}
		}
	}
	if !*follow {
		return printStoredLog(ctx, c, kind, id, *host, print)
	}
	if _, err := streamLog(ctx, c, kind, id, 0, print); err != nil {
		return stoppedFollowing(ctx, kind, id, err)
	}
	var job struct{ Status, Error string }
	if err := c.call(ctx, "GET", fmt.Sprintf("/%ss/%d", kind, id), nil, &job); err != nil {
		return err
	}
	if job.Status != store.BuildSuccess && job.Status != store.BuildDuplicate {
		return fmt.Errorf("%s %d %s: %s", kind, id, job.Status, oneLine(job.Error))
	}
	return nil
}

// printStoredLog pages through the stored log with the API's after= cursor.
func printStoredLog(ctx context.Context, c *apiClient, kind string, id int64, host string, print func([]store.LogLine)) error {
	after := int64(0)
	for {
		q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {"1000"}}
		if host != "" {
			q.Set("host", host)
		}
		var page struct {
			Lines []store.LogLine `json:"lines"`
			Next  int64           `json:"next"`
		}
		if err := c.call(ctx, "GET", fmt.Sprintf("/%ss/%d/log?%s", kind, id, q.Encode()), nil, &page); err != nil {
			return err
		}
		print(page.Lines)
		if len(page.Lines) == 0 || page.Next <= after {
			return nil
		}
		after = page.Next
	}
}

// parseAt reads --at: an RFC 3339 time, or HH:MM meaning the next such time of the local clock.
func parseAt(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	hm, err := time.ParseInLocation("15:04", s, now.Location())
	if err != nil {
		return time.Time{}, usagef("--at %q: want an RFC 3339 time such as 2026-12-24T22:00:00+08:00, or HH:MM such as 22:00", s)
	}
	t := time.Date(now.Year(), now.Month(), now.Day(), hm.Hour(), hm.Minute(), 0, 0, now.Location())
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// waitingWords says what a new deployment does now: queued, or what it waits for.
func waitingWords(d *store.Deployment) string {
	switch d.Status {
	case store.DeploymentAwaitingApproval:
		words := fmt.Sprintf("awaits %d approval(s)", d.ApprovalsRequired)
		if d.ApprovalExpiresAt != nil {
			words += " until " + deadlineWords(*d.ApprovalExpiresAt, time.Now())
		}
		return words + fmt.Sprintf(" (ferry approve %d)", d.ID)
	case store.DeploymentScheduled:
		words := "scheduled"
		if d.ScheduledAt != nil {
			words += " for " + d.ScheduledAt.Local().Format("2006-01-02 15:04 MST")
		}
		if d.FrozenBy != "" {
			words += ", waiting on the freeze " + d.FrozenBy
		}
		return words
	}
	return d.Status
}

// decideCommand approves or rejects a deployment or a job run that waits for approval:
// "approve ID" and "approve deployment ID" decide on a deployment, "approve run ID" on a run.
func decideCommand(ctx context.Context, verb string, args []string, env func(string) string, std streams) error {
	usage := "ferry " + verb + " [deployment|run] ID [--comment TEXT]"
	subject := "deployment"
	if len(args) > 0 && (args[0] == "deployment" || args[0] == "run") {
		subject, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	comment := fs.String("comment", "", "why, for the record")
	pos, err := parseArgs(fs, args, 1, 1, usage)
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usagef("usage: %s", usage)
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	done := strings.TrimSuffix(verb, "e") + "ed" // approved, rejected
	if subject == "run" {
		var r store.JobRun
		if err := c.call(ctx, "POST", fmt.Sprintf("/runs/%d/%s", id, verb), map[string]any{"comment": *comment}, &r); err != nil {
			return err
		}
		fmt.Fprintf(std.stdout, "run %d: %s; now %s (job %s of %s)\n", r.ID, done, runState(&r), r.Job, r.Project)
		return nil
	}
	var d store.Deployment
	if err := c.call(ctx, "POST", fmt.Sprintf("/deployments/%d/%s", id, verb), map[string]any{"comment": *comment}, &d); err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "deployment %d: %s; now %s (%s to %s of %s)\n", d.ID, done, waitingWords(&d), d.Version, d.Environment, d.Project)
	return nil
}
