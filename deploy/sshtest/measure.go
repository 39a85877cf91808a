package sshtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// WireBytes returns the bytes forwarded to and from the host's sshd over connections that have
// ended, both directions together: what went over the network. It waits up to 5s for the
// connections still open to end, so a count taken right after a client finished is whole.
func (h *Host) WireBytes() int64 {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		open := len(h.open)
		h.mu.Unlock()
		if open == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h.wire.Load()
}

// Connections returns how many connections the host's port accepted so far.
func (h *Host) Connections() int64 { return h.accepted.Load() }

// CPU returns the CPU time (user and system) used so far by every process of the host: its sshd,
// the sessions and commands sshd ran, and the services started there. A process that ended
// counts through its parent once the parent reaped it, as the kernel adds it there.
func (h *Host) CPU() (time.Duration, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.nsPid))
	if err != nil {
		return 0, fmt.Errorf("host %s: read its pid namespace: %w", h.Name, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || theirs != ns {
			continue
		}
		ticks += processTicks(pid)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on Linux.
const clockTicks = 100

// processTicks returns utime+stime+cutime+cstime of pid, 0 when it is gone.
func processTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: the fields after it start after its ')'.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	var total int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14-17 of the line, counted from field 3
		if i < len(fields) {
			n, _ := strconv.ParseInt(fields[i], 10, 64)
			total += n
		}
	}
	return total
}
