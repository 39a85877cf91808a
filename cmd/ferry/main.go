// Command ferry is a self-hosted release service for teams on GitLab.
//
//	ferry serve              run the web server and the workers
//	ferry migrate            apply database migrations and exit
//	ferry user add NAME      add a user (password from stdin, or generated and printed)
//	ferry token add USER     print a new API token of USER on stdout
//	ferry version            print the version
//	ferry backup FILE        back up the data dir (SQLite: the database too)
//	ferry restore FILE       restore a backup into an empty data dir
//
// and the client commands that talk to a server's API: login, projects, builds, versions,
// deployments, instances, build, deploy, rollback, logs, cancel, retry (docs/cli.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		os.Exit(1)
	}
}

const usage = `usage: ferry <command> [flags]

commands:
  serve               run the web server and the workers
  migrate             apply database migrations and exit
  user add NAME       add a user; --admin makes an administrator; the password is read from
                      stdin, or generated and printed when stdin is a terminal or empty
  token add USER      print a new API token for USER on stdout (TOKEN=$(ferry token add admin))
  version             print ferry's version and the commit it was built from
  backup FILE         back up the data dir into FILE (.tar.gz): with SQLite a consistent copy of
                      the database taken while ferry runs, the secret key and the artifacts
  restore FILE        restore a backup into an empty data dir

client commands (they talk to a ferry server; see docs/cli.md):
  login URL [--user NAME]                 store the server and an API token (FERRY_URL and
                                          FERRY_TOKEN override what is stored)
  projects | builds P | versions P | deployments P | instances P | approvals   [--json]
  build P (--ref REF | --sha SHA) [--follow]
  deploy P ENV (VERSION | --latest) [--hosts a,b] [--strategy rolling:25%] [--at TIME]
         [--override-freeze REASON] [--follow]
  rollback P ENV [--yes] [--follow]       deploy the version that ran on ENV before
  logs build|deployment|run ID [-f] [--host NAME] [--step N]
                                          print a log; -f follows it live (runs: lines after
                                          STEP/HOST, --step and --host keep one step or host)
  cancel build|deployment ID
  retry build|deployment ID [--follow]
  approve [deployment|run] ID [--comment TEXT]
                                          approve a deployment (the default) or a job run
                                          that waits for approval
  reject [deployment|run] ID [--comment TEXT]   reject it
  jobs P [--json]                         a project's jobs (script jobs)
  run P JOB [-p NAME=VALUE]... [--hosts a,b] [--follow]   start a run of a job
  runs P JOB [--limit N] [--json]         a job's runs
  run-cancel | run-continue | run-retry RUN_ID [--follow]

Exit status: 0 success, 1 the operation failed (with --follow: the build, deployment or run did
not succeed), 2 the command was used wrongly.

Configuration comes from FERRY_* environment variables; run "ferry serve -h" for the flags.
`

// run is main without the process: arguments, environment and streams come in, an error goes out.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cfg := DefaultConfig(env)
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, cfg, rest, stderr)
	case "migrate":
		return migrate(ctx, cfg, rest, stdout, stderr)
	case "user":
		return userCommand(ctx, cfg, rest, stdin, stdout, stderr)
	case "token":
		return tokenCommand(ctx, cfg, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "backup":
		return backupCommand(ctx, cfg, rest, stdout, stderr)
	case "restore":
		return restoreCommand(ctx, cfg, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		if handled, err := clientCommand(ctx, cmd, rest, env, streams{stdin, stdout, stderr}); handled {
			return err
		}
		fmt.Fprintf(stderr, "ferry: unknown command %q\n\n%s", cmd, usage)
		return flag.ErrHelp
	}
}

// clientCommand runs a command that talks to a ferry server; handled is false for a name that
// is none of them.
func clientCommand(ctx context.Context, cmd string, args []string, env func(string) string, std streams) (handled bool, err error) {
	if l, ok := listings[cmd]; ok {
		return true, listCommand(ctx, cmd, l, args, env, std.stdout)
	}
	if handled, err := runClientCommand(ctx, cmd, args, env, std); handled {
		return true, err
	}
	switch cmd {
	case "login":
		return true, loginCommand(ctx, args, std)
	case "build":
		return true, buildCommand(ctx, args, env, std)
	case "deploy":
		return true, deployCommand(ctx, args, env, std)
	case "rollback":
		return true, rollbackCommand(ctx, args, env, std)
	case "logs":
		return true, logsCommand(ctx, args, env, std)
	case "cancel", "retry":
		return true, jobCommand(ctx, cmd, args, env, std)
	case "approve", "reject":
		return true, decideCommand(ctx, cmd, args, env, std)
	}
	return false, nil
}

func parseFlags(name string, cfg *Config, args []string, stderr io.Writer, extra func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Flags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), cfg.Validate()
}

func serve(ctx context.Context, cfg Config, args []string, stderr io.Writer) error {
	if _, err := parseFlags("serve", &cfg, args, stderr, nil); err != nil {
		return err
	}
	m := NewMain(cfg)
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	<-ctx.Done()
	m.Logger.Info("shutting down")
	return m.Close()
}
