package config

import (
	"strconv"
	"strings"
)

// keyLines maps the key paths of a TOML document to the line each is
// written on, so that errors can point at it: the TOML library reports
// positions for syntax errors only. Paths look like the ones in error
// messages: "affinity.ttl", "backend[1].address", "affinity" for a table
// header. Keys inside inline tables are not recorded; the key that holds
// the inline table stands for them.
//
// keyLines runs after the TOML library has accepted the document, so it
// may assume valid TOML. On anything it does not follow it stops and
// returns what it has found so far; it never fails.
func keyLines(data []byte) map[string]int {
	lines, _ := scanKeys(data)
	return lines
}

// duplicate is a key or table header written a second time, which TOML
// forbids.
type duplicate struct {
	path        string // as in keyLines: "backend[1].id", "health"
	table       bool   // a [table] header rather than a key
	line, first int    // the line of the second definition and of the first
}

// scanKeys is keyLines, and also returns the keys and table headers that
// the document defines twice, in document order, so that the TOML
// library's complaint about them can be put in lbctl's words. Keys inside
// inline tables are not seen, so neither are their duplicates.
func scanKeys(data []byte) (map[string]int, []duplicate) {
	sc := scanner{s: strings.TrimPrefix(string(data), "\ufeff"), line: 1}
	lines := make(map[string]int)
	var dups []duplicate
	record := func(path string, line int, table bool) {
		if first, ok := lines[path]; ok {
			dups = append(dups, duplicate{path: path, table: table, line: line, first: first})
			return
		}
		lines[path] = line
	}
	// arrays maps the path of each array of tables, without indexes, to
	// the index of its latest table.
	arrays := make(map[string]int)
	resolve := func(parts []string) string {
		var raw, path strings.Builder
		for i, p := range parts {
			if i > 0 {
				raw.WriteByte('.')
				path.WriteByte('.')
			}
			raw.WriteString(p)
			path.WriteString(p)
			if n, ok := arrays[raw.String()]; ok {
				path.WriteString("[" + strconv.Itoa(n) + "]")
			}
		}
		return path.String()
	}

	var table []string // the current [table] or [[array]] header
	for {
		sc.skipBlank()
		if sc.eof() {
			return lines, dups
		}
		line := sc.line
		if sc.s[sc.i] == '[' {
			array := strings.HasPrefix(sc.s[sc.i:], "[[")
			sc.i++
			if array {
				sc.i++
			}
			parts, ok := sc.key()
			if !ok {
				return lines, dups
			}
			if array {
				raw := strings.Join(parts, ".")
				if n, seen := arrays[raw]; seen {
					arrays[raw] = n + 1
				} else {
					arrays[raw] = 0
				}
			}
			table = parts
			record(resolve(table), line, true)
			sc.skipLine()
			continue
		}
		parts, ok := sc.key()
		if !ok || sc.eof() || sc.s[sc.i] != '=' {
			return lines, dups
		}
		sc.i++
		record(resolve(append(table[:len(table):len(table)], parts...)), line, false)
		sc.skipValue()
	}
}

// parentPath returns the path that encloses path in keyLines' terms:
// "backend[1]" for "backend[1].id", "backend" for "backend[1]", "" for a
// top-level key.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// scanner walks a TOML document just far enough to find its keys.
type scanner struct {
	s    string
	i    int // offset of the next byte
	line int // line of s[i], from 1
}

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

// skipBlank skips whitespace, newlines and comments.
func (sc *scanner) skipBlank() {
	for !sc.eof() {
		switch sc.s[sc.i] {
		case '\n':
			sc.line++
			sc.i++
		case ' ', '\t', '\r':
			sc.i++
		case '#':
			sc.skipLine()
		default:
			return
		}
	}
}

// skipSpace skips spaces and tabs.
func (sc *scanner) skipSpace() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// skipLine skips to the end of the line, leaving the newline.
func (sc *scanner) skipLine() {
	if j := strings.IndexByte(sc.s[sc.i:], '\n'); j >= 0 {
		sc.i += j
	} else {
		sc.i = len(sc.s)
	}
}

// key reads a dotted key and the blanks after it, and returns its parts
// unquoted.
func (sc *scanner) key() ([]string, bool) {
	var parts []string
	for {
		sc.skipSpace()
		if sc.eof() {
			return nil, false
		}
		var part string
		switch c := sc.s[sc.i]; c {
		case '"', '\'':
			start := sc.i
			sc.skipString()
			quoted := sc.s[start:sc.i]
			if len(quoted) < 2 || quoted[len(quoted)-1] != c {
				return nil, false
			}
			part = quoted[1 : len(quoted)-1]
			if c == '"' {
				if u, err := strconv.Unquote(quoted); err == nil {
					part = u
				}
			}
		default:
			start := sc.i
			for !sc.eof() && !strings.ContainsRune(" \t\r\n=.[]#\"'", rune(sc.s[sc.i])) {
				sc.i++
			}
			part = sc.s[start:sc.i]
			if part == "" {
				return nil, false
			}
		}
		parts = append(parts, part)
		sc.skipSpace()
		if sc.eof() || sc.s[sc.i] != '.' {
			return parts, true
		}
		sc.i++
	}
}

// skipValue skips a value, which arrays, inline tables and multi-line
// strings may spread over several lines, up to the newline that ends it.
func (sc *scanner) skipValue() {
	depth := 0
	for !sc.eof() {
		switch sc.s[sc.i] {
		case '\n':
			if depth == 0 {
				return
			}
			sc.line++
			sc.i++
		case '#':
			sc.skipLine()
		case '"', '\'':
			sc.skipString()
		case '[', '{':
			depth++
			sc.i++
		case ']', '}':
			depth = max(depth-1, 0)
			sc.i++
		default:
			sc.i++
		}
	}
}

// skipString skips a basic, literal or multi-line string starting at
// s[i], counting the newlines inside it.
func (sc *scanner) skipString() {
	q := sc.s[sc.i]
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(sc.s[sc.i:], triple) {
		sc.i += 3
		for !sc.eof() {
			c := sc.s[sc.i]
			switch {
			case c == '\\' && q == '"':
				sc.i++
				if !sc.eof() {
					if sc.s[sc.i] == '\n' {
						sc.line++
					}
					sc.i++
				}
			case strings.HasPrefix(sc.s[sc.i:], triple):
				sc.i += 3
				// Up to two quotes may end the content right before
				// the closing delimiter: """a "quoted" word"""".
				for n := 0; n < 2 && !sc.eof() && sc.s[sc.i] == q; n++ {
					sc.i++
				}
				return
			default:
				if c == '\n' {
					sc.line++
				}
				sc.i++
			}
		}
		return
	}
	sc.i++
	for !sc.eof() {
		c := sc.s[sc.i]
		switch {
		case c == '\n':
			return
		case c == '\\' && q == '"':
			sc.i = min(sc.i+2, len(sc.s))
		default:
			sc.i++
			if c == q {
				return
			}
		}
	}
}
