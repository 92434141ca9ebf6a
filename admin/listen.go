package admin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/config"
)

// Listen opens the admin listener at addr: "host:port" for TCP or
// "unix:/path" for a unix socket. A socket file left by an instance that
// is gone is removed; one that something still listens on is an error.
// The socket file is made readable and writable by its owner only.
func Listen(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "unix:") {
		// TCP: the config has checked the address; net.Listen says
		// what is wrong with one that did not come from it.
		if addr == "" {
			return nil, errors.New("admin listen address is empty")
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", addr, err)
		}
		return ln, nil
	}
	_, path, err := config.ParseAdminListen(addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %q: %w", addr, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	return ln, nil
}

// removeStaleSocket removes the socket file at path when nothing listens
// on it any more. A missing file is fine; a file that is not a socket, or
// a socket that answers, is left alone and is an error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use: another instance listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether it is in use: %w", path, err)
	}
	return os.Remove(path)
}
