// Package rulesql evaluates AWS IoT SQL (version 2016-03-23) in the subset the template's topic rules use: what a
// rule selects from a message and hands its action.
package rulesql

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Statement is a topic rule's SQL in the subset the emulator evaluates: SELECT followed by *, field names, and
// topic(n) AS alias, FROM one quoted topic filter, no WHERE. Anything else is refused rather than misread.
type Statement struct {
	TopicFilter string
	All         bool        // SELECT *
	Fields      []ruleField // in order
}

type ruleField struct {
	Name  string // payload field, or the alias of topic(n)
	Topic int    // >0 for topic(n): the n-th level of the topic (AWS IoT SQL topic(Decimal), 1-based)
}

var (
	ruleSelect = regexp.MustCompile(`(?is)^\s*SELECT\s+(.+?)\s+FROM\s+'([^']+)'\s*$`)
	ruleTopic  = regexp.MustCompile(`(?i)^topic\(\s*(\d+)\s*\)\s+AS\s+([A-Za-z_][A-Za-z0-9_]*)$`)
	ruleIdent  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse parses a rule statement.
func Parse(sql string) (*Statement, error) {
	m := ruleSelect.FindStringSubmatch(sql)
	if m == nil {
		return nil, fmt.Errorf("rule SQL %q: the emulator supports only SELECT <*, fields, topic(n) AS name> FROM '<topic filter>'", sql)
	}
	s := &Statement{TopicFilter: m[2]}
	for _, item := range strings.Split(m[1], ",") {
		item = strings.TrimSpace(item)
		switch tm := ruleTopic.FindStringSubmatch(item); {
		case item == "*":
			s.All = true
		case tm != nil:
			n, _ := strconv.Atoi(tm[1])
			if n < 1 {
				return nil, fmt.Errorf("rule SQL %q: topic(%d): levels count from 1", sql, n)
			}
			s.Fields = append(s.Fields, ruleField{Name: tm[2], Topic: n})
		case ruleIdent.MatchString(item):
			s.Fields = append(s.Fields, ruleField{Name: item})
		default:
			return nil, fmt.Errorf("rule SQL %q: the emulator cannot evaluate %q", sql, item)
		}
	}
	return s, nil
}

// Apply returns what the rule hands its action for a message: for SELECT * alone, the payload as published;
// otherwise a JSON object of the selected fields (a field the payload lacks is left out, as AWS IoT leaves out
// undefined values). It fails on a payload that is not a JSON object when fields are selected.
func (s *Statement) Apply(topic string, payload []byte) ([]byte, error) {
	if s.All && len(s.Fields) == 0 {
		return payload, nil
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(payload, &in); err != nil {
		return nil, fmt.Errorf("payload is not a JSON object: %w", err)
	}
	out := map[string]json.RawMessage{}
	if s.All {
		for k, v := range in {
			out[k] = v
		}
	}
	levels := strings.Split(topic, "/")
	for _, f := range s.Fields {
		if f.Topic > 0 {
			if f.Topic <= len(levels) {
				v, _ := json.Marshal(levels[f.Topic-1])
				out[f.Name] = v
			}
			continue
		}
		if v, ok := in[f.Name]; ok {
			out[f.Name] = v
		}
	}
	return json.Marshal(out)
}
