package config

import (
	"strings"
	"testing"
)

func TestAccountSettingsKeys(t *testing.T) {
	cases := []struct {
		ctx     map[string]any
		level   string
		percent int
		refused string // the key refused, "" for none
	}{
		{map[string]any{}, "", DefaultConnectedDropAlarmPercent, ""},
		{map[string]any{KeyIoTLogging: "off"}, "", DefaultConnectedDropAlarmPercent, ""},
		{map[string]any{KeyIoTLogging: "on"}, "ERROR", DefaultConnectedDropAlarmPercent, ""},
		{map[string]any{KeyIoTLogging: "info", KeyConnectedDropAlarmPercent: "35"}, "INFO", 35, ""},
		{map[string]any{KeyIoTLogging: "VERBOSE"}, "", DefaultConnectedDropAlarmPercent, KeyIoTLogging},
		{map[string]any{KeyConnectedDropAlarmPercent: 0}, "", DefaultConnectedDropAlarmPercent, KeyConnectedDropAlarmPercent},
		{map[string]any{KeyConnectedDropAlarmPercent: "half"}, "", DefaultConnectedDropAlarmPercent, KeyConnectedDropAlarmPercent},
	}
	for _, c := range cases {
		l := &loader{get: func(k string) any { return c.ctx[k] }, cfg: &Config{}}
		l.accountSettings()
		if c.refused != "" {
			if len(l.errs) != 1 || !strings.Contains(l.errs[0].Error(), c.refused) || !strings.Contains(l.errs[0].Error(), "Fix: pass -c") {
				t.Errorf("%v: errors %v, want one refusing %s with its fix", c.ctx, l.errs, c.refused)
			}
			continue
		}
		if len(l.errs) > 0 || l.cfg.IoTLogLevel != c.level || l.cfg.ConnectedDropAlarmPercent != c.percent {
			t.Errorf("%v: level %q, percent %d, errors %v; want %q, %d", c.ctx, l.cfg.IoTLogLevel, l.cfg.ConnectedDropAlarmPercent, l.errs, c.level, c.percent)
		}
	}
}
