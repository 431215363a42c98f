package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Context keys of the account-wide AWS IoT settings the stack widens (fleet indexing is always on; logging is
// opt-in) and of the connected-devices alarm.
const (
	// KeyIoTLogging turns on AWS IoT logging (v2, account-wide) at a level: off (the default), ERROR (connection
	// refusals and authorization failures: what diagnosing a device that will not connect needs; "on" means
	// this), WARN, INFO (adds every connect and disconnect) or DEBUG. An account that already logs at least as
	// much keeps its own settings; `cdk destroy` puts them back.
	KeyIoTLogging = "iotLogging"
	// KeyConnectedDropAlarmPercent is the drop of the connected-devices fleet metric, in percent from one
	// 5-minute period to the next, at which the alarm fires (1..100; default DefaultConnectedDropAlarmPercent).
	KeyConnectedDropAlarmPercent = "connectedDropAlarmPercent"
)

// DefaultConnectedDropAlarmPercent: a fifth of the fleet gone within 5 minutes is an outage (a CA, a policy, the
// network), not devices going to sleep one by one.
const DefaultConnectedDropAlarmPercent = 20

// IoT log levels KeyIoTLogging accepts (AWS IoT's LogLevel values that log something).
var iotLogLevels = []string{"ERROR", "WARN", "INFO", "DEBUG"}

// accountSettings reads KeyIoTLogging and KeyConnectedDropAlarmPercent.
func (l *loader) accountSettings() {
	l.cfg.ConnectedDropAlarmPercent = DefaultConnectedDropAlarmPercent
	if v, _ := str(l.get(KeyIoTLogging)); v != "" {
		level := strings.ToUpper(strings.TrimSpace(v))
		switch {
		case level == "OFF" || level == "FALSE":
			level = ""
		case level == "ON" || level == "TRUE":
			level = "ERROR"
		case !contains(iotLogLevels, level):
			l.fail(KeyIoTLogging, fmt.Sprintf("%q is not a log level", v),
				"pass -c iotLogging=ERROR (refusals and authorization failures), INFO (every connect too), WARN, DEBUG, or off")
			return
		}
		l.cfg.IoTLogLevel = level
	}
	if v := l.get(KeyConnectedDropAlarmPercent); v != nil {
		n, err := strconv.Atoi(strings.TrimSpace(fmt.Sprint(v)))
		if err != nil || n < 1 || n > 100 {
			l.fail(KeyConnectedDropAlarmPercent, fmt.Sprintf("%v is not a whole percentage from 1 to 100", v),
				fmt.Sprintf("pass -c connectedDropAlarmPercent=%d (the default)", DefaultConnectedDropAlarmPercent))
			return
		}
		l.cfg.ConnectedDropAlarmPercent = n
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
