package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/config"
)

// jsonKeys returns the top-level keys of one JSON object line, in order,
// duplicates included (encoding/json would silently keep the last one).
func jsonKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
	}
	return keys
}

func duplicateKey(keys []string) string {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}

// TestLogMsgKeyBecomesID: a component's "msg" attribute (the message a
// line is about) must not clash with the line's own text.
func TestLogMsgKeyBecomesID(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			c := &config.Config{Log: config.Log{Level: "info", Format: format}}
			log := newLogger(c, &buf)
			log.With("msg", "ID-1", "component", "pipeline").Info("held by policy", "rule", "r1")
			log.Info("quarantine: message held", "msg", "ID-2")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("%d lines: %q", len(lines), buf.String())
			}
			want := []struct{ text, id string }{{"held by policy", "ID-1"}, {"quarantine: message held", "ID-2"}}
			for i, line := range lines {
				if format == "json" {
					if d := duplicateKey(jsonKeys(t, line)); d != "" {
						t.Errorf("key %q twice in %s", d, line)
					}
					var rec map[string]any
					json.Unmarshal([]byte(line), &rec)
					if rec["msg"] != want[i].text || rec["id"] != want[i].id {
						t.Errorf("line %s: msg %v id %v, want %q and %q", line, rec["msg"], rec["id"], want[i].text, want[i].id)
					}
					continue
				}
				if strings.Count(line, " msg=") != 1 || !strings.Contains(line, fmt.Sprintf("msg=%q", want[i].text)) ||
					!strings.Contains(line, " id="+want[i].id) {
					t.Errorf("text line %s: want one msg=%q and id=%s", line, want[i].text, want[i].id)
				}
			}
		})
	}
}
