package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"ferry/store"
)

// switchScript points current at releases/<version> with one rename over the old link, so
// there is never a moment without a current link, and marks the release as just deployed.
func switchScript(l layout, version string) string {
	return fmt.Sprintf("cd %s && touch -c %s && ln -sfn %s .current.tmp && mv -T .current.tmp current",
		store.ShellQuote(l.root), store.ShellQuote("releases/"+version), store.ShellQuote("releases/"+version))
}

// stopAndSwitch stops the release current points at (previous, with its stop section) and,
// once it stopped, switches current to version, in one command: one round trip less for every
// deployment and rollback. The step is the same as stopRelease then switchCurrent: switched
// is called between the two (for the switch step) and the error says which of them failed;
// either way current still points at previous.
func (c *Conn) stopAndSwitch(ctx context.Context, l layout, spec store.StopSpec, previous, version string, out func(stream, line string), switched func()) error {
	stop, grace := stopScript(l, spec)
	if stop == "" {
		out(StreamFerry, "no stop command or pid file in .ferry.yml: nothing to stop")
		switched()
		return c.switchCurrent(ctx, l, version, out)
	}
	ctx, cancel := context.WithTimeout(ctx, grace+time.Minute)
	defer cancel()
	// A line only this command prints says the stop is over: the output before it is the
	// stop's, and a failure after it the switch's.
	nonce := make([]byte, 12)
	rand.Read(nonce)
	marker := "ferry-stopped-" + hex.EncodeToString(nonce)
	stopped := false
	relay := func(stream, line string) {
		if stream == StreamStdout && line == marker {
			stopped = true
			switched()
			return
		}
		out(stream, line)
	}
	script := "(\n" + stop + "\n) || exit $?\necho " + marker + "\n" + switchScript(l, version)
	err := c.Run(ctx, script, releaseEnv(l, previous), relay)
	switch {
	case err == nil:
		return nil
	case stopped:
		return fmt.Errorf("switch %s to release %s on %s: %w", l.current(), version, c.target.label(), err)
	}
	return fmt.Errorf("stop release %s on %s: %w", previous, c.target.label(), err)
}
