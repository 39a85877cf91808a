package deploy

import (
	"fmt"
	"sync"
)

// logBudget bounds the host output one deployment keeps in its log: at most max bytes in all
// and perHost bytes per host. Past a bound, lines are dropped and one "log truncated" line
// says so (once per host, and once for the deployment); the deployment goes on.
type logBudget struct {
	max, perHost int64

	mu       sync.Mutex
	total    int64
	hosts    map[string]int64
	cutHosts map[string]bool
	cutAll   bool
}

func newLogBudget(max, perHost int64) *logBudget {
	return &logBudget{max: max, perHost: perHost, hosts: map[string]int64{}, cutHosts: map[string]bool{}}
}

// admit reports whether n more bytes of host's output may be kept, and, the first time a
// bound is passed, the line that says the log is truncated.
func (b *logBudget) admit(host string, n int64) (keep bool, notice string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.cutAll || b.cutHosts[host]:
		return false, ""
	case b.total+n > b.max:
		b.cutAll = true
		return false, fmt.Sprintf("log truncated: the output of this deployment's hosts beyond %s is not kept; the deployment goes on", byteCount(b.max))
	case b.hosts[host]+n > b.perHost:
		b.cutHosts[host] = true
		return false, fmt.Sprintf("log truncated: the output of %s beyond %s is not kept; the deployment goes on", host, byteCount(b.perHost))
	}
	b.total += n
	b.hosts[host] += n
	return true, ""
}
