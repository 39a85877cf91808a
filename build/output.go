package build

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxLineBytes is the longest line delivered whole; longer lines arrive in pieces.
const MaxLineBytes = 64 * 1024

// scriptOutput carries a script's stdout and stderr to a LineFunc, line by line, through
// pipes the script's processes write to directly.
type scriptOutput struct {
	out     LineFunc
	mu      sync.Mutex
	readers []*os.File
	writers []*os.File
	wg      sync.WaitGroup
	done    chan struct{}
}

func startOutput(cmd *exec.Cmd, out LineFunc) (*scriptOutput, error) {
	o := &scriptOutput{out: out, done: make(chan struct{})}
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			o.abort()
			return nil, fmt.Errorf("create pipe for build output: %w", err)
		}
		o.readers = append(o.readers, r)
		o.writers = append(o.writers, w)
	}
	cmd.Stdout, cmd.Stderr = o.writers[0], o.writers[1]
	return o, nil
}

// started closes our copies of the write ends and starts reading.
func (o *scriptOutput) started() {
	for _, w := range o.writers {
		w.Close()
	}
	for i, stream := range []string{"stdout", "stderr"} {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.readLines(stream, o.readers[i])
		}()
	}
	go func() {
		o.wg.Wait()
		close(o.done)
	}()
}

func (o *scriptOutput) abort() {
	for _, f := range append(o.readers, o.writers...) {
		f.Close()
	}
}

// finish waits until every writer has closed its end of the pipes, but at most wait: a
// process outside our reach may hold a pipe open forever.
func (o *scriptOutput) finish(wait time.Duration) {
	select {
	case <-o.done:
	case <-time.After(wait):
	}
	for _, r := range o.readers {
		r.Close()
	}
	<-o.done
}

func (o *scriptOutput) readLines(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	var carry []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(carry) > 0 {
			chunk = append(carry, chunk...)
			carry = nil
		}
		switch {
		case err == nil:
			o.emit(stream, trimNewline(chunk))
		case errors.Is(err, bufio.ErrBufferFull):
			cut := runeCut(chunk)
			carry = append([]byte(nil), chunk[cut:]...)
			o.emit(stream, chunk[:cut])
		default:
			if len(chunk) > 0 {
				o.emit(stream, chunk)
			}
			return
		}
	}
}

func trimNewline(b []byte) []byte {
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// runeCut returns where to split b so that no UTF-8 character is cut in two.
func runeCut(b []byte) int {
	for i := len(b); i > 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i-1]) {
			if utf8.FullRune(b[i-1:]) {
				return len(b)
			}
			if i-1 > 0 {
				return i - 1
			}
			return len(b)
		}
	}
	return len(b)
}

// emit delivers one line as valid UTF-8 without NUL bytes, which databases refuse.
func (o *scriptOutput) emit(stream string, b []byte) {
	line := string(b)
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
	}
	if strings.IndexByte(line, 0) >= 0 {
		line = strings.ReplaceAll(line, "\x00", "\uFFFD")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.out(stream, line)
}
