package l7

import (
	"net/http"
	"strconv"
)

// cannedResponse is a complete error response, built once.
type cannedResponse struct {
	keepAlive, close []byte
	bodyLen          int // the length of the body that ends both
}

// canned holds the error responses lbctl writes itself.
var canned = func() map[int]*cannedResponse {
	m := make(map[int]*cannedResponse)
	for status, detail := range map[int]string{
		400: "the request is malformed",
		408: "the request head did not arrive in time",
		431: "the request head is too large",
		501: "the request uses a feature lbctl does not implement",
		502: "the backend failed while answering",
		503: "no backend is available",
		504: "the backend did not answer in time",
		505: "only HTTP/1.0 and HTTP/1.1 are served",
	} {
		body := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + detail + "\n"
		head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Cache-Control: no-store\r\n"
		m[status] = &cannedResponse{
			keepAlive: []byte(head + "\r\n" + body),
			close:     []byte(head + "Connection: close\r\n\r\n" + body),
			bodyLen:   len(body),
		}
	}
	return m
}()

// cannedFor returns the canned response for status, or 502's.
func cannedFor(status int) *cannedResponse {
	if c, ok := canned[status]; ok {
		return c
	}
	return canned[502]
}
