// Package browsertest runs Debian's chromium headless for tests of the
// stats page and of the TLS front door, and collects what the page logs as errors. It never
// downloads a browser: without chromium on PATH a test skips, naming it,
// except in CI (CI=true), where that is a failure.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is one headless chromium with one tab, closed when the test ends.
type Browser struct {
	// Ctx runs chromedp actions in the tab.
	Ctx context.Context

	mu       sync.Mutex
	problems []string
}

// Chromium returns the path of chromium, or skips the test (fails it when
// CI=true) when it is not installed.
func Chromium(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium not found (%v): .ci/run installs the Debian package chromium", err)
	}
	t.Skip("chromium not found: install the Debian package chromium (apt-get install chromium) to run the browser test")
	return ""
}

// IgnoreCertificateErrors lets the browser go on past a certificate it
// cannot verify, such as a test's self-signed one, as a user clicking
// through the warning would.
var IgnoreCertificateErrors = chromedp.Flag("ignore-certificate-errors", true)

// Start starts chromium headless with a 1280x1000 window and a profile in
// the test's temporary directory, with opts added to the usual flags; it
// stops when the test ends. Console
// errors and warnings, uncaught exceptions and the browser's own error
// log lines (such as a failed load) are kept for Problems.
func Start(t testing.TB, opts ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	chromium := Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	all := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(all, opts...)...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	b := &Browser{Ctx: bctx}
	if err := chromedp.Listen(bctx, b.listen); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

func (b *Browser) listen(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning {
			return
		}
		var args []string
		for _, a := range ev.Args {
			args = append(args, string(a.Value))
		}
		p = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		p = "exception: " + ev.ExceptionDetails.Text
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError && ev.Entry.Level != log.EntryLevelWarning {
			return
		}
		p = fmt.Sprintf("log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// Problems returns what the page logged as errors or warnings so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Text returns the text of the first element that sel matches, "" when
// none does. It reads in one evaluation, so that a page replacing the
// element meanwhile cannot make it fail.
func (b *Browser) Text(t testing.TB, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b.Ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {}).innerText || ""`, sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// HasClass reports whether the element sel exists and has class c.
func (b *Browser) HasClass(t testing.TB, sel, c string) bool {
	t.Helper()
	ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`!!document.querySelector(%q) && document.querySelector(%q).classList.contains(%q)`, sel, sel, c)))
	if err != nil {
		t.Fatalf("evaluating in the page: %v", err)
	}
	return ok
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(t testing.TB, path string) {
	t.Helper()
	shot, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
}
