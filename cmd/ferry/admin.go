package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"ferry/store"
)

// openMigrated opens the configured store and brings its schema up to date, for the one-shot
// commands.
func openMigrated(ctx context.Context, cfg Config) (*store.DB, error) {
	db, err := openStore(ctx, cfg, cfg.Logger())
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	return db, nil
}

func migrate(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if _, err := parseFlags("migrate", &cfg, args, stderr, nil); err != nil {
		return err
	}
	key, _, err := cfg.Key()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, store.Options{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Key: key})
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d migration(s); the %s database is up to date\n", n, db.Dialect())
	return nil
}

func userCommand(ctx context.Context, cfg Config, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return errors.New("usage: ferry user add NAME [--admin] [--email ADDRESS]")
	}
	var admin bool
	var email string
	rest, err := parseFlags("user add", &cfg, args[1:], stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&admin, "admin", false, "make the user an administrator")
		fs.StringVar(&email, "email", "", "mail address for notifications")
	})
	if err != nil {
		return err
	}
	rest, admin = takeBoolFlag(rest, "--admin", admin)
	if len(rest) != 1 {
		return errors.New("usage: ferry user add NAME [--admin] [--email ADDRESS]")
	}
	password, generated, err := readPassword(stdin)
	if err != nil {
		return err
	}
	db, err := openMigrated(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx = store.WithActor(ctx, store.Actor{Name: "ferry user add"})
	if err := db.CreateUser(ctx, &store.User{Name: rest[0], Email: email, Admin: admin}, password); err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(stdout, "created user %s with password: %s\n", rest[0], password)
	} else {
		fmt.Fprintf(stdout, "created user %s\n", rest[0])
	}
	return nil
}

// takeBoolFlag lets a flag stand after the positional argument too ("user add bob --admin").
func takeBoolFlag(args []string, name string, value bool) ([]string, bool) {
	var out []string
	for _, a := range args {
		if a == name || a == "-"+strings.TrimPrefix(name, "--") {
			value = true
			continue
		}
		out = append(out, a)
	}
	return out, value
}

// readPassword takes the first line of stdin as the password; with a terminal or nothing on
// stdin it generates one.
func readPassword(stdin io.Reader) (string, bool, error) {
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return store.RandomSecret(15), true, nil
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return store.RandomSecret(15), true, nil
	}
	return line, false, nil
}

func tokenCommand(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return errors.New("usage: ferry token add USER [--name NAME]")
	}
	var name string
	rest, err := parseFlags("token add", &cfg, args[1:], stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "cli", "what the token is for")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("usage: ferry token add USER [--name NAME]")
	}
	db, err := openMigrated(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := db.GetUserByName(ctx, rest[0])
	if err != nil {
		return fmt.Errorf("token for %s: %w", rest[0], err)
	}
	ctx = store.WithActor(ctx, store.Actor{Name: "ferry token add"})
	_, secret, err := db.CreateToken(ctx, u.ID, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	return nil
}
