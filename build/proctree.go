package build

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cookieVar is set to a random value in each script's environment. Processes inherit it, so a
// daemon that left the script's process group (setsid, double fork) is still found and ended,
// as Jenkins does with its build cookie.
const cookieVar = "FERRY_BUILD_COOKIE"

func newCookie() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// processTree is everything a script started: its process group and any process carrying
// its cookie. In a sandbox, root is bwrap and its child the sandbox's init; they are spared
// SIGTERM so the script's own processes get their grace period (bwrap would end them at once),
// and get SIGKILL with the rest.
type processTree struct {
	pgid      int // 0: only the cookie finds members
	cookie    string
	sandboxed bool
}

// stop sends SIGTERM to every live process of the tree, waits up to grace for them to exit,
// then sends SIGKILL to those left. With nothing alive it returns at once.
func (t processTree) stop(grace time.Duration) {
	if len(t.members()) == 0 {
		return
	}
	t.signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if len(t.members()) == 0 {
			return
		}
	}
	t.signal(syscall.SIGKILL)
	for range 20 { // SIGKILL is not refused; give the kernel a moment
		if len(t.members()) == 0 {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (t processTree) signal(sig syscall.Signal) {
	spare := t.sandboxProcesses(sig)
	if t.pgid > 0 && len(spare) == 0 {
		syscall.Kill(-t.pgid, sig)
	}
	for _, pid := range t.members() {
		if !spare[pid] {
			syscall.Kill(pid, sig)
		}
	}
}

// sandboxProcesses are bwrap's own processes, spared a SIGTERM.
func (t processTree) sandboxProcesses(sig syscall.Signal) map[int]bool {
	if !t.sandboxed || sig == syscall.SIGKILL || t.pgid <= 0 {
		return nil
	}
	spare := map[int]bool{t.pgid: true}
	for _, pid := range t.members() {
		if st, ok := readProcStat(pid); ok && st.ppid == t.pgid {
			spare[pid] = true
		}
	}
	return spare
}

// members lists the live (not zombie) processes of the tree, found in /proc. Without /proc it
// falls back to asking whether the process group still exists.
func (t processTree) members() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		if t.pgid > 0 && syscall.Kill(-t.pgid, 0) == nil {
			return []int{-t.pgid}
		}
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if t.isMember(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (t processTree) isMember(pid int) bool {
	st, ok := readProcStat(pid)
	if !ok || st.state == 'Z' || st.state == 'X' {
		return false
	}
	if t.pgid > 0 && st.pgrp == t.pgid {
		return true
	}
	if t.cookie == "" {
		return false
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(env, []byte(cookieVar+"="+t.cookie))
}

// procStat reads a process's state letter and process group from /proc/<pid>/stat.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	st, ok := readProcStat(pid)
	return st.state, st.pgrp, ok
}

// procStatus is what ferry reads of a process in /proc/<pid>/stat.
type procStatus struct {
	state     byte
	ppid      int
	pgrp      int
	startTime uint64 // clock ticks after boot: with the pid, names one process for good
}

func readProcStat(pid int) (procStatus, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStatus{}, false
	}
	// The command name in parentheses may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStatus{}, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "" {
		return procStatus{}, false
	}
	ppid, err1 := strconv.Atoi(fields[1])
	pgrp, err2 := strconv.Atoi(fields[2])
	start, err3 := strconv.ParseUint(fields[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStatus{}, false
	}
	return procStatus{state: fields[0][0], ppid: ppid, pgrp: pgrp, startTime: start}, true
}

// runRecord is written under the data dir while a script runs, so that a ferry starting after
// one that was killed ends what the dead one left: processes that outlived it (a script run
// without the sandbox, whose children Pdeathsig does not reach) and the workspace.
type runRecord struct {
	FerryPID   int    `json:"ferry_pid"`
	FerryStart uint64 `json:"ferry_start"`
	Cookie     string `json:"cookie"`
	Workspace  string `json:"workspace"`
}

// writeRunRecord stores rec as dir/name.json (mode 0600) and returns a function removing it.
func writeRunRecord(dir, name string, rec runRecord) (remove func(), err error) {
	self, ok := readProcStat(os.Getpid())
	if !ok {
		return nil, errors.New("record the build's processes: cannot read /proc/self/stat")
	}
	rec.FerryPID, rec.FerryStart = os.Getpid(), self.startTime
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record the build's processes: %w", err)
	}
	file := filepath.Join(dir, name+".json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return nil, fmt.Errorf("record the build's processes: %w", err)
	}
	return func() { os.Remove(file) }, nil
}

// alive reports whether the ferry process that wrote the record still runs (the same process,
// not another that got its pid).
func (rec runRecord) alive() bool {
	st, ok := readProcStat(rec.FerryPID)
	return ok && st.startTime == rec.FerryStart && st.state != 'Z' && st.state != 'X'
}

// sweepRunRecords ends the processes and removes the workspaces of every record in dir whose
// ferry is dead, and the record. Records of live processes (another ferry sharing the data
// dir) are left alone. Workspaces are removed only when they lie under workRoot. It returns
// the records it swept.
func sweepRunRecords(dir, workRoot string, grace time.Duration) ([]runRecord, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var swept []runRecord
	var errs []error
	for _, file := range files {
		var rec runRecord
		data, err := os.ReadFile(file)
		if err == nil {
			err = json.Unmarshal(data, &rec)
		}
		if err != nil {
			os.Remove(file) // half-written by a process that died while writing it
			continue
		}
		if rec.alive() {
			continue
		}
		if rec.Cookie != "" {
			// Only the cookie: the dead script's process group id may belong to others by now.
			processTree{cookie: rec.Cookie}.stop(grace)
		}
		if rel, err := filepath.Rel(workRoot, rec.Workspace); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			if err := removeTree(rec.Workspace); err != nil {
				errs = append(errs, fmt.Errorf("remove workspace %s: %w", rec.Workspace, err))
				continue
			}
		}
		os.Remove(file)
		swept = append(swept, rec)
	}
	return swept, errors.Join(errs...)
}
