package config

import (
	"reflect"
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

func TestScanKeysDuplicates(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []duplicate
	}{
		{"none", "mode = 1\n[health]\nrise = 2\n[[backend]]\nid = 1\n[[backend]]\nid = 2\n", nil},
		{"sub-table after its table", "[a.b]\nx = 1\n[a]\ny = 2\n", nil},
		{"key", "mode = 1\n\nmode = 2\n", []duplicate{{path: "mode", line: 3, first: 1}}},
		{"key in a backend", "[[backend]]\nid = 1\n[[backend]]\nid = 2\n# note\nid = 3\n",
			[]duplicate{{path: "backend[1].id", line: 6, first: 4}}},
		{"dotted key and table key", "health.rise = 1\n[health]\nrise = 2\n", []duplicate{{path: "health.rise", line: 3, first: 1}}},
		{"quoted key", "\"mode\" = 1\nmode = 2\n", []duplicate{{path: "mode", line: 2, first: 1}}},
		{"table", "[health]\n[ health ]\n", []duplicate{{path: "health", table: true, line: 2, first: 1}}},
		{"two", "a = 1\na = 2\nb = 1\nb = 2\n", []duplicate{{path: "a", line: 2, first: 1}, {path: "b", line: 4, first: 3}}},
		{"not inside a string", "a = \"\"\"\na = 2\n\"\"\"\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := scanKeys([]byte(tt.doc))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("duplicates = %+v, want %+v", got, tt.want)
			}
		})
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
