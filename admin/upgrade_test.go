package admin_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/admin"
)

// POST /api/upgrade answers with the new process once it is ready, 409
// while another upgrade is in flight and 500 with the reason when the new
// process failed; Client.Upgrade returns the same.
func TestUpgrade(t *testing.T) {
	f := startAPI(t, "s3cret")
	c, err := admin.NewClient(f.addr, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Upgrade(context.Background())
	if err != nil || res.PID != 4242 || res.Summary != "upgraded: new process 4242 serves" {
		t.Errorf("Upgrade = %+v, %v", res, err)
	}
	if a := f.call(t, "GET", "/api/upgrade", ""); a.status != 405 {
		t.Errorf("GET /api/upgrade: %d, want 405", a.status)
	}

	f.inst.SetUpgrade(func() (admin.UpgradeResult, error) {
		return admin.UpgradeResult{}, fmt.Errorf("upgrade: %w", admin.ErrUpgradeInProgress)
	})
	_, err = c.Upgrade(context.Background())
	if ae, ok := errors.AsType[*admin.APIError](err); !ok || ae.Status != 409 || !strings.Contains(ae.Body.Error, "already in progress") {
		t.Errorf("Upgrade in flight: %v, want a 409 saying so", err)
	}

	f.inst.SetUpgrade(func() (admin.UpgradeResult, error) {
		return admin.UpgradeResult{}, errors.New("new process 99: exited before it was ready (exit status 1)")
	})
	a := f.call(t, "POST", "/api/upgrade", "")
	if msg := a.errorText(t); a.status != 500 || !strings.Contains(msg, "running process serves on") || !strings.Contains(msg, "exit status 1") {
		t.Errorf("failed upgrade: %d %s", a.status, a.body)
	}
	if logs := f.log.String(); !strings.Contains(logs, `msg=upgraded source=api pid=4242`) {
		t.Errorf("log lacks the upgrade:\n%s", logs)
	}
}
