package main

import (
	"strings"
	"testing"
)

// TestChannelAllowedNetsSetting: FERRY_CHANNEL_ALLOWED_NETS is parsed at start, and a bad
// entry stops the start with the variable named.
func TestChannelAllowedNetsSetting(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg := DefaultConfig(env(map[string]string{"FERRY_DATA_DIR": t.TempDir(), "FERRY_CHANNEL_ALLOWED_NETS": "127.0.0.1/32, ::1"}))
	if err := cfg.Validate(); err != nil || len(cfg.channelNets) != 2 {
		t.Fatalf("Validate = %v, nets %v", err, cfg.channelNets)
	}
	cfg = DefaultConfig(env(map[string]string{"FERRY_DATA_DIR": t.TempDir(), "FERRY_CHANNEL_ALLOWED_NETS": "127.0.0.1/33"}))
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "FERRY_CHANNEL_ALLOWED_NETS") {
		t.Fatalf("Validate of a bad network = %v", err)
	}
	cfg = DefaultConfig(env(map[string]string{"FERRY_DATA_DIR": t.TempDir()}))
	if err := cfg.Validate(); err != nil || len(cfg.channelNets) != 0 {
		t.Fatalf("default: Validate = %v, nets %v (want none allowed)", err, cfg.channelNets)
	}
}
