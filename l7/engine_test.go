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
