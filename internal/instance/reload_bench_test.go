package instance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/config"
)

// BenchmarkReloadFile1000 is a whole reload of a 1,000-backend config file,
// as SIGHUP runs it: read, decode, validate, and apply, alternating between
// two files that differ in 100 backends added, 100 removed and 100
// reweighted. The data path never waits for it: it reads the pool through
// one atomic snapshot.
func BenchmarkReloadFile1000(b *testing.B) {
	dir := b.TempDir()
	write := func(name string, offset int) string {
		var sb strings.Builder
		sb.WriteString("listen = \"127.0.0.1:8080\"\n[health]\ncheck = \"none\"\n")
		for i := offset; i < offset+1000; i++ {
			weight := 1
			if offset > 0 && i%10 == 0 {
				weight = 2
			}
			fmt.Fprintf(&sb, "[[backend]]\nid = \"app-%04d\"\naddress = \"10.%d.%d.%d:80\"\nweight = %d\n", i, i>>16&255, i>>8&255, i&255, weight)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	paths := []string{write("a.toml", 0), write("b.toml", 100)}
	cfg, err := config.Load(paths[0])
	if err != nil {
		b.Fatal(err)
	}
	in, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	i := 0
	in.Load = func() (*config.Config, error) { i++; return config.Load(paths[i%2]) }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Reload(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
