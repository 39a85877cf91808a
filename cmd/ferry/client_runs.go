package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"ferry/store"
)

// The job commands (BlueKing-style script jobs; docs/cli.md "Jobs and runs"): list a project's
// jobs and a job's runs, start a run and follow its live log, and cancel, continue or retry one.

func init() {
	listings["jobs"] = listing{
		usage: "ferry jobs PROJECT [--json]", project: true,
		path:   func(p string) string { return "/projects/" + pathEscape(p) + "/jobs" },
		header: "ID\tNAME\tSTEPS\tPARAMETERS\tDESCRIPTION",
		rows: eachRow(func(j store.ScriptJob) []any {
			steps := make([]string, 0, len(j.Steps))
			for _, s := range j.Steps {
				steps = append(steps, s.Name)
			}
			params := make([]string, 0, len(j.Params))
			for _, p := range j.Params {
				params = append(params, p.Name+"="+p.Default)
			}
			return []any{j.ID, j.Name, strings.Join(steps, " → "), strings.Join(params, " "), oneLine(j.Description)}
		}),
	}
}

// runClientCommand runs the job-run commands; handled is false for other names.
func runClientCommand(ctx context.Context, cmd string, args []string, env func(string) string, std streams) (bool, error) {
	switch cmd {
	case "run":
		return true, runJobCommand(ctx, args, env, std)
	case "runs":
		return true, listRunsCommand(ctx, args, env, std.stdout)
	case "run-cancel", "run-continue", "run-retry":
		return true, changeRunCommand(ctx, strings.TrimPrefix(cmd, "run-"), args, env, std)
	}
	return false, nil
}

// paramFlags gathers repeated -p NAME=VALUE flags.
type paramFlags map[string]string

func (p paramFlags) String() string { return "" }

func (p paramFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", v)
	}
	p[name] = value
	return nil
}

// findJob returns the id of job JOB of PROJECT; JOB may be its name or its id.
func findJob(ctx context.Context, c *apiClient, project, job string) (*store.ScriptJob, error) {
	var jobs []*store.ScriptJob
	if err := c.call(ctx, "GET", "/projects/"+pathEscape(project)+"/jobs", nil, &jobs); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.Name == job || strconv.FormatInt(j.ID, 10) == job {
			return j, nil
		}
	}
	return nil, &apiError{Status: 404, Message: fmt.Sprintf("project %s has no job %q (ferry jobs %s lists them)", project, job, project)}
}

// jobOfArgs resolves "PROJECT JOB" or "JOB_ID" to a job id.
func jobOfArgs(ctx context.Context, c *apiClient, pos []string, usage string) (int64, error) {
	if len(pos) == 1 {
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id <= 0 {
			return 0, usagef("give PROJECT JOB, or a job's id; usage: %s", usage)
		}
		return id, nil
	}
	j, err := findJob(ctx, c, pos[0], pos[1])
	if err != nil {
		return 0, err
	}
	return j.ID, nil
}

// runJobCommand starts a run: ferry run PROJECT JOB [-p NAME=VALUE]... [--hosts a,b] [--follow].
func runJobCommand(ctx context.Context, args []string, env func(string) string, std streams) error {
	const usage = "ferry run PROJECT JOB (or ferry run JOB_ID) [-p NAME=VALUE]... [--hosts a,b] [--follow]"
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	params := paramFlags{}
	fs.Var(params, "p", "a value of a job parameter, NAME=VALUE (repeatable)")
	hosts := fs.String("hosts", "", "only these of each step's hosts (comma list)")
	follow := fs.Bool("follow", false, "show the live log until the run ends; exit 0 only on success")
	pos, err := parseArgs(fs, args, 1, 2, usage)
	if err != nil {
		return err
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	id, err := jobOfArgs(ctx, c, pos, usage)
	if err != nil {
		return err
	}
	body := map[string]any{"params": map[string]string(params)}
	if *hosts != "" {
		body["hosts"] = splitComma(*hosts)
	}
	var r store.JobRun
	if err := c.call(ctx, "POST", fmt.Sprintf("/jobs/%d/runs", id), body, &r); err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "run %d of job %s (%s) %s\n", r.ID, r.Job, r.Project, runState(&r))
	if !*follow {
		return nil
	}
	return followRun(ctx, c, r.ID, runLogFilter{}, std.stdout)
}

// runState reads "queued", or "awaits 1 approval(s) until 14:05 CST (in 23 min) (…)" for a
// run waiting for approval.
func runState(r *store.JobRun) string {
	if r.Status == store.RunAwaitingApproval {
		return runWaitingWords(r, time.Now())
	}
	return r.Status
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// listRunsCommand lists a job's runs: ferry runs PROJECT JOB [--limit N] [--json].
func listRunsCommand(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	const usage = "ferry runs PROJECT JOB (or ferry runs JOB_ID) [--limit N] [--json]"
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	limit := fs.Int("limit", 0, "at most this many")
	pos, err := parseArgs(fs, args, 1, 2, usage)
	if err != nil {
		return err
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	id, err := jobOfArgs(ctx, c, pos, usage)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/jobs/%d/runs", id)
	if *limit > 0 {
		path += "?" + url.Values{"limit": {strconv.Itoa(*limit)}}.Encode()
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		return writeIndented(stdout, raw)
	}
	var runs []store.JobRun
	if err := json.Unmarshal(raw, &runs); err != nil {
		return fmt.Errorf("the runs are not what ferry sends: %v", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATUS\tTRIGGERED BY\tQUEUED\tERROR")
	for _, r := range runs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.TriggeredBy, when(r.QueuedAt), short(oneLine(r.Error), 60))
	}
	return w.Flush()
}

// changeRunCommand cancels, continues or retries a run: ferry run-cancel|run-continue|run-retry ID.
func changeRunCommand(ctx context.Context, verb string, args []string, env func(string) string, std streams) error {
	usage := "ferry run-" + verb + " RUN_ID"
	fs := flag.NewFlagSet("run-"+verb, flag.ContinueOnError)
	follow := fs.Bool("follow", false, "follow the run afterwards (continue, retry)")
	if verb != "cancel" {
		usage += " [--follow]"
	}
	pos, err := parseArgs(fs, args, 1, 1, usage)
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usagef("usage: %s", usage)
	}
	if *follow && verb == "cancel" {
		return usagef("run-cancel takes no --follow")
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	var r store.JobRun
	if err := c.call(ctx, "POST", fmt.Sprintf("/runs/%d/%s", id, verb), nil, &r); err != nil {
		return err
	}
	fmt.Fprintf(std.stdout, "run %d: %s asked (now %s)\n", id, verb, runState(&r))
	if *follow {
		return followRun(ctx, c, id, runLogFilter{}, std.stdout)
	}
	return nil
}
