package l7

import (
	"os"
	"testing"
)

// engineEnv names the engine the package's tests run on when set: the
// loop engine's run of the suites (see TestLoopEngineSuites) sets it.
const engineEnv = "LBCTL_TEST_L7_ENGINE"

func TestMain(m *testing.M) {
	testHookEngine = os.Getenv(engineEnv)
	os.Exit(m.Run())
}

// skipOnLoop skips a test of the goroutine engine's parking of idle
// connections when the suites run on the loop engine, which holds idle
// connections without a goroutine by design.
func skipOnLoop(t *testing.T) {
	t.Helper()
	if testHookEngine == EngineLoop {
		t.Skip("parking is the goroutine engine's: an event loop holds an idle connection without a goroutine")
	}
}

// waitingForRequest reports whether a connection of p's waits for its
// next request: on the goroutine engine, a handler waits in waitByte; on
// the loop engine, a loop takes the settings of the wait for the next
// request before the response goes out, so an open connection whose
// client has its response is one.
func waitingForRequest(p *Proxy) bool {
	if testHookEngine == EngineLoop {
		return p.Counts().Open() > 0
	}
	return goroutineIn("(*connReader).waitByte")
}
