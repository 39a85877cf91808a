package build

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
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
// its cookie.
type processTree struct {
	pgid   int
	cookie string
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
	syscall.Kill(-t.pgid, sig)
	for _, pid := range t.members() {
		syscall.Kill(pid, sig)
	}
}

// members lists the live (not zombie) processes of the tree, found in /proc. Without /proc it
// falls back to asking whether the process group still exists.
func (t processTree) members() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		if syscall.Kill(-t.pgid, 0) == nil {
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
	state, pgrp, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' {
		return false
	}
	if pgrp == t.pgid {
		return true
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(env, []byte(cookieVar+"="+t.cookie))
}

// procStat reads a process's state letter and process group from /proc/<pid>/stat.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name in parentheses may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 3 {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(fields[2])
	return fields[0][0], pgrp, err == nil
}
