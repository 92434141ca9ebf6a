package config

import "testing"

func TestLogAccess(t *testing.T) {
	bad := []struct {
		file string
		want string
	}{
		{"[log]\naccess = \"/var/log/\"\n" + oneBackend, `lbctl.toml:2: log.access: "/var/log/" names a directory: want "", "stdout" or a file path`},
		{"[log]\naccess = \"logs/..\"\n" + oneBackend, `lbctl.toml:2: log.access: "logs/.." names a directory`},
		{"[log]\naccess = \"/tmp/a\\nb\"\n" + oneBackend, `lbctl.toml:2: log.access: "/tmp/a\nb" must not contain control characters`},
		{"[log]\naccess = true\n" + oneBackend, `lbctl.toml:2: log.access: true`},
	}
	for _, tt := range bad {
		_, err := Parse([]byte(tt.file), "lbctl.toml")
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want %q", tt.file, tt.want)
			continue
		}
		if got := errorLines(err); !hasLine(got, tt.want) {
			t.Errorf("error =\n%v\nwant a line with\n%s", err, tt.want)
		}
	}
	for _, access := range []string{"", "stdout", "/var/log/lbctl/access.log", "access.log"} {
		cfg, err := Parse([]byte("[log]\naccess = "+quote(access)+"\n"+oneBackend), "lbctl.toml")
		if err != nil {
			t.Errorf("access %q: %v", access, err)
			continue
		}
		if cfg.Log.Access != access {
			t.Errorf("access = %q, want %q", cfg.Log.Access, access)
		}
	}
	if d := Default(); d.Log.Access != "" {
		t.Errorf("default log.access = %q, want off", d.Log.Access)
	}
}
