package config

import (
	"bytes"
	"os"
	"reflect"
	"testing"
)

// FuzzParse checks that no file makes Parse panic, and that every file it
// accepts survives an Encode and Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, seed := range []string{
		minimal,
		"",
		"mode = \n",
		"[affinty]\nttl = \"1h\"\n" + oneBackend,
		"[affinity]\nttl = \"soon\"\nipv4_prefix = 40\n" + oneBackend,
		"[cookie]\nsecret = [\"a\", \"\", 3]\nsame_site = \"none\"\n",
		"backend = [{ id = \"a\", address = \"[::1]:1\" }, 7]\n",
		"[backend]\nid = 1\n",
		"s = \"\"\"\n[[backend]]\n\"\"\"\nt = '''x'''\n" + oneBackend,
		"a.b.\"c\\\"d\".e = { f = [1, { g = 2 }] }\n[[x.y]]\n[[x.y]]\nz = 1979-05-27T07:32:00Z\n",
		oneBackend + "weight = 0\n" + oneBackend,
		"[admin]\nlisten = \"unix:/run/lbctl.sock\"\ntoken = \"t0ken\"\n" + oneBackend,
		"[admin]\nlisten = \"0.0.0.0:9090\"\n" + oneBackend,
		"mode = \"l4\"\n\n[health\ncheck = \"tcp\"\n",
		oneBackend + "id = \"again\"\n",
		"[[backend]]\nid = \"a\"\naddress = \"[::1]:9001\"\n[[backend]]\nid = \"b\"\naddress = \"[0::1]:9001\"\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := c.Encode(&buf); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		back, err := Parse(buf.Bytes(), "encoded.toml")
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(data))): %v\ndata:\n%q\nencoded:\n%s", err, data, buf.String())
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%+v\nwant\n%+v", back, c)
		}
	})
}
