package backend

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// HTTPCheck passes when GET http://<address><Path> answers 2xx or 3xx.
// Redirects are not followed: a 3xx is itself healthy. The request's Host is
// the backend's address, and the response body is drained (up to 64 KiB) and
// closed. The zero value checks "/" with a private client.
type HTTPCheck struct {
	// Path is the request path, with an optional query; "" means "/".
	Path string
	// Client sends the request. Nil means a private client with keep-alives
	// off that ignores proxy settings. Its CheckRedirect is overridden: the
	// check never follows redirects.
	Client *http.Client
}

var _ Checker = (*HTTPCheck)(nil)

// maxHealthBody bounds how much of a response body a check reads.
const maxHealthBody = 64 << 10

// healthClient is the client of HTTPChecks without their own. Probes are
// seconds apart, so keeping connections alive would only hold idle sockets on
// every backend; and a health check must reach the backend, not a proxy.
var healthClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHealthBody,
	},
	CheckRedirect: noRedirect,
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Check sends the GET and judges the status code.
func (c *HTTPCheck) Check(ctx context.Context, b *Backend) error {
	client := healthClient
	if c.Client != nil {
		own := *c.Client
		own.CheckRedirect = noRedirect
		client = &own
	}
	path := c.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.Address()+path, nil)
	if err != nil {
		return fmt.Errorf("http check %s: %w", b.ID, err)
	}
	req.Header.Set("User-Agent", "lbctl-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http check %s: %w", b.ID, err)
	}
	// The verdict is the status; a body cut short does not change it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHealthBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("http check %s: GET %s: status %s", b.ID, path, resp.Status)
	}
	return nil
}
