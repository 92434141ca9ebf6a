package config

import (
	"testing"
)

func TestKeyLines(t *testing.T) {
	doc := "\ufeff# comment [not] = a table\r\n" + // 1
		"mode = \"l4\" # trailing [comment]\r\n" + // 2
		"note = \"\"\"\n" + // 3
		"[fake]\n" + // 4
		"key = 1 \\\"\"\" \n" + // 5
		"\"\"\"\"\"\n" + // 6: content ends with two quotes
		"lit = '''\n[fake2]\n'''\n" + // 7-9
		"list = [\n  1, # [x]\n  2,\n]\n" + // 10-13
		"inline = { a = 1, b = { c = 2 } }\n" + // 14
		"a.\"b.c\" . d = 1\n" + // 15
		"[ affinity ]\n" + // 16
		"ttl = \"1h\"\n" + // 17
		"[[backend]]\n" + // 18
		"id = 'x'\n" + // 19
		"[[ backend ]] # second\n" + // 20
		"id = \"y\\\"\"\n" + // 21
		"address = \"z\"\n" + // 22
		"[backend.sub]\n" + // 23
		"k = 1\n" // 24
	want := map[string]int{
		"mode":               2,
		"note":               3,
		"lit":                7,
		"list":               10,
		"inline":             14,
		"a.b.c.d":            15,
		"affinity":           16,
		"affinity.ttl":       17,
		"backend[0]":         18,
		"backend[0].id":      19,
		"backend[1]":         20,
		"backend[1].id":      21,
		"backend[1].address": 22,
		"backend[1].sub":     23,
		"backend[1].sub.k":   24,
	}
	got := keyLines([]byte(doc))
	for k, line := range want {
		if got[k] != line {
			t.Errorf("line of %s = %d, want %d", k, got[k], line)
		}
	}
	for _, fake := range []string{"fake", "fake2", "key", "x"} {
		if _, ok := got[fake]; ok {
			t.Errorf("found key %q inside a string or comment", fake)
		}
	}
}

func TestParentPath(t *testing.T) {
	tests := []struct{ path, want string }{
		{"backend[1].id", "backend[1]"},
		{"backend[1]", "backend"},
		{"affinity.ttl", "affinity"},
		{"mode", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := parentPath(tt.path); got != tt.want {
				t.Errorf("parentPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}
