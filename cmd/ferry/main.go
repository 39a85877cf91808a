// Command ferry is a self-hosted release service for teams on GitLab.
//
//	ferry serve              run the web server and the workers
//	ferry migrate            apply database migrations and exit
//	ferry user add NAME      add a user (password from stdin, or generated and printed)
//	ferry token add USER     print a new API token of USER on stdout
//	ferry version            print the version
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
  version             print ferry's version

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
		fmt.Fprintln(stdout, "ferry", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "ferry: unknown command %q\n\n%s", cmd, usage)
		return flag.ErrHelp
	}
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
