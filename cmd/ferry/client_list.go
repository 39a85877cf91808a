package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"ferry/store"
)

// listing is one `ferry <things>` command: where the list is and how a row reads.
type listing struct {
	usage   string
	project bool // takes PROJECT
	paged   bool // takes --limit and --status
	path    func(project string) string
	header  string
	rows    func(raw json.RawMessage, w io.Writer) error
}

var listings = map[string]listing{
	"projects": {
		usage: "ferry projects [--json]", path: func(string) string { return "/projects" },
		header: "NAME\tGITLAB PATH\tKEEP VERSIONS",
		rows:   eachRow(func(p store.Project) []any { return []any{p.Name, p.GitLabPath, p.KeepVersions} }),
	},
	"builds": {
		usage: "ferry builds PROJECT [--status S,…] [--limit N] [--json]", project: true, paged: true,
		path:   func(p string) string { return "/projects/" + pathEscape(p) + "/builds" },
		header: "ID\tNUMBER\tSTATUS\tREF\tSHA\tVERSION\tQUEUED",
		rows: eachRow(func(b store.Build) []any {
			return []any{b.ID, b.Number, b.Status, b.Ref, short(b.SHA, 8), b.Version, when(b.QueuedAt)}
		}),
	},
	"versions": {
		usage: "ferry versions PROJECT [--json]", project: true,
		path:   func(p string) string { return "/projects/" + pathEscape(p) + "/versions" },
		header: "NAME\tSHA\tSIZE\tBUILD\tCREATED",
		rows: eachRow(func(v store.Version) []any {
			return []any{v.Name, short(v.SHA, 8), byteCount(v.Size), v.BuildID, when(v.CreatedAt)}
		}),
	},
	"deployments": {
		usage: "ferry deployments PROJECT [--status S,…] [--limit N] [--json]", project: true, paged: true,
		path:   func(p string) string { return "/projects/" + pathEscape(p) + "/deployments" },
		header: "ID\tENVIRONMENT\tVERSION\tSTATUS\tTRIGGERED BY\tQUEUED",
		rows: eachRow(func(d store.Deployment) []any {
			return []any{d.ID, d.Environment, d.Version, d.Status, d.TriggeredBy, when(d.QueuedAt)}
		}),
	},
	"approvals": {
		usage: "ferry approvals [--json]", path: func(string) string { return "/approvals" },
		header: "ID\tPROJECT\tENVIRONMENT\tVERSION\tREQUESTED BY\tAPPROVALS\tQUEUED",
		rows: eachRow(func(d store.Deployment) []any {
			return []any{d.ID, d.Project, d.Environment, d.Version, d.RequestedBy,
				fmt.Sprintf("%d of %d", approvedCount(d.Approvals), d.ApprovalsRequired), when(d.QueuedAt)}
		}),
	},
	"instances": {
		usage: "ferry instances PROJECT [--json]", project: true,
		path:   func(p string) string { return "/projects/" + pathEscape(p) + "/instances" },
		header: "HOST\tENVIRONMENT\tVERSION\tPREVIOUS\tSTATUS\tSINCE",
		rows: eachRow(func(in store.Instance) []any {
			return []any{in.Host, in.Environment, in.Version, in.Previous, in.Status, when(in.Since)}
		}),
	},
}

// listCommand runs a listing: a table for people, or with --json the API's answer as it is.
func listCommand(ctx context.Context, name string, l listing, args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	status := fs.String("status", "", "only these statuses, a comma list")
	limit := fs.Int("limit", 0, "at most this many (default: the server's, 50)")
	n := 0
	if l.project {
		n = 1
	}
	pos, err := parseArgs(fs, args, n, n, l.usage)
	if err != nil {
		return err
	}
	if !l.paged && (*status != "" || *limit != 0) {
		return usagef("--status and --limit are for builds and deployments; usage: %s", l.usage)
	}
	project := ""
	if l.project {
		project = pos[0]
	}
	c, err := clientFromEnv(env)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *status != "" {
		q.Set("status", *status)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	path := l.path(project)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		return writeIndented(stdout, raw)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, l.header)
	if err := l.rows(raw, tw); err != nil {
		return err
	}
	return tw.Flush()
}

// eachRow decodes a JSON list of T and writes one tab-separated row per item.
func eachRow[T any](cells func(T) []any) func(json.RawMessage, io.Writer) error {
	return func(raw json.RawMessage, w io.Writer) error {
		var items []T
		if err := json.Unmarshal(raw, &items); err != nil {
			return fmt.Errorf("the answer is not what ferry sends: %v", err)
		}
		for _, it := range items {
			for i, cell := range cells(it) {
				if i > 0 {
					fmt.Fprint(w, "\t")
				}
				if s, ok := cell.(string); ok && s == "" {
					cell = "-"
				}
				fmt.Fprint(w, cell)
			}
			fmt.Fprintln(w)
		}
		return nil
	}
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// when shows a time in the local zone, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// byteCount shows a size as people read it: 512 B, 3.4 MiB.
func byteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// clientFromEnv returns the API client of the stored login (or FERRY_URL and FERRY_TOKEN).
func clientFromEnv(env func(string) string) (*apiClient, error) {
	cfg, err := loadClientConfig(env)
	if err != nil {
		return nil, err
	}
	return newAPIClient(cfg), nil
}

func approvedCount(list []*store.Approval) int {
	n := 0
	for _, a := range list {
		if a.Decision == store.DecisionApproved {
			n++
		}
	}
	return n
}

// writeIndented prints the API's JSON answer indented, as --json promises.
func writeIndented(stdout io.Writer, raw json.RawMessage) error {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := stdout.Write(out.Bytes())
	return err
}
