package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lbctl/lbctl/config"
)

// clientTimeout bounds one API call, a reload waiting for another included.
const clientTimeout = 2 * time.Minute

// Client calls the runtime API of one lbctl instance.
type Client struct {
	addr  string
	token string
	base  string
	http  *http.Client
}

// NewClient returns a client of the API at addr ("host:port" or
// "unix:/path", as admin.listen takes it) that sends token when it is not
// empty. Each call uses a connection of its own, so a client holds nothing
// open between calls.
func NewClient(addr, token string) (*Client, error) {
	network, address, err := config.ParseAdminListen(addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if network == "" {
		return nil, errors.New("admin address is empty")
	}
	base := "http://" + address
	if network == "unix" {
		base = "http://localhost"
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &Client{
		addr:  addr,
		token: token,
		base:  base,
		http: &http.Client{
			Timeout: clientTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, address)
				},
				DisableKeepAlives: true,
			},
		},
	}, nil
}

// APIError is an answer of the API that is not a success.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Body is the answer's error and, for a refused reload, its messages.
	Body Error
}

func (e *APIError) Error() string {
	if len(e.Body.Messages) == 0 {
		return e.Body.Error
	}
	return e.Body.Error + ":\n" + strings.Join(e.Body.Messages, "\n")
}

// Do sends method path (with its query) and, when body is not nil, body
// as JSON, and returns the answer's JSON. An answer that is not a success
// is an *APIError (with the answer's JSON still returned, for callers that
// print it). When nothing answers at the address, the error says so.
func (c *Client) Do(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("no lbctl admin API at %s: is [admin] listen set? (%w)", c.addr, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: reading the answer: %w", c.addr, err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !json.Valid(raw) {
		return nil, fmt.Errorf("%s answered %s, not as lbctl's admin API", c.addr, resp.Status)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		if err := json.Unmarshal(raw, &e.Body); err != nil || e.Body.Error == "" {
			e.Body.Error = resp.Status
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Body.Error += " (the token is --token, LBCTL_ADMIN_TOKEN or admin.token)"
		}
		return raw, e
	}
	return raw, nil
}

// unwrapURL drops the *url.Error around a transport error: its text
// repeats the method and URL, which the caller's message already names.
func unwrapURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// Upgrade asks the instance to start the binary on disk with its listeners
// handed over (POST /api/upgrade), and returns what the new process is once
// it is ready. A refused or failed upgrade is an *APIError; the instance
// then serves on.
func (c *Client) Upgrade(ctx context.Context) (UpgradeResult, error) {
	raw, err := c.Do(ctx, http.MethodPost, "/api/upgrade", nil)
	if err != nil {
		return UpgradeResult{}, err
	}
	var res UpgradeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return UpgradeResult{}, fmt.Errorf("the admin API's answer to POST /api/upgrade: %w", err)
	}
	return res, nil
}
