//go:build !linux

package l7

import (
	"net"

	"github.com/lbctl/lbctl/internal/accept"
)

// Engines of the L7 front door (Proxy.Engine).
const (
	// EngineGoroutine serves each connection from a goroutine of its own.
	EngineGoroutine = "goroutine"
	// EngineLoop serves plain HTTP/1.1 connections from event loops on
	// Linux (and from goroutines elsewhere).
	EngineLoop = "loop"
)

// loopFronts exists on Linux only; elsewhere every connection has its own
// goroutine.
type loopFronts struct{}

func (p *Proxy) serveLoops(net.Listener) (bool, error) { return false, nil }

func (p *Proxy) retireLoops(net.Listener) []<-chan struct{} { return nil }

func (p *Proxy) closeLoopConns(string) {}

func (p *Proxy) resumeHandoff(*accept.Conn, *session) bool { return true }
